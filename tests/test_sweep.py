"""Precision sweep: one tiny grid point (1 epoch), resumed without retraining."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from qnet.errors import ConfigError, OutputExistsError
from qnet.sweep import pareto_front, parse_bits, run_sweep


def test_pareto_front() -> None:
    costs = [10, 20, 5, 30, 20]
    acc = [0.8, 0.9, 0.5, 0.85, 0.95]
    assert pareto_front(costs, acc) == [2, 0, 4]


def test_parse_bits() -> None:
    assert parse_bits("2, 4,8", "--w-bits") == [2, 4, 8]
    for bad in ("", "2,x", "0", "4,4", "17"):
        with pytest.raises(ConfigError, match="--w-bits"):
            parse_bits(bad, "--w-bits")


def test_sweep_one_point_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    statuses: list[str] = []
    res = run_sweep(
        "mlp",
        "digits",
        [3],
        [4],
        "pynq-z2",
        out,
        epochs=1,
        quiet=True,
        on_point=lambda i, n, s: statuses.append(s),
    )
    assert statuses == ["trained"]
    rows = list(csv.DictReader(res.csv_path.open()))
    assert len(rows) == 1 and rows[0]["w_bits"] == "3" and rows[0]["a_bits"] == "4"
    assert 0.0 <= float(rows[0]["test_accuracy"]) <= 1.0 and int(rows[0]["lut"]) > 0
    assert res.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resumed on another board: not retrained, re-estimated
    res2 = run_sweep(
        "mlp",
        "digits",
        [3],
        [4],
        "alveo-u250",
        out,
        epochs=1,
        quiet=True,
        on_point=lambda i, n, s: statuses.append(s),
    )
    assert statuses == ["trained", "cached"]
    assert res2.points[0].test_accuracy == res.points[0].test_accuracy
    with pytest.raises(ConfigError, match="other training settings"):
        run_sweep("mlp", "digits", [3], [4], "pynq-z2", out, epochs=2, quiet=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        run_sweep("mlp", "digits", [3], [4], "pynq-z2", tmp_path / "other", epochs=1)
