"""Precision sweeps: tiny grid points (1 epoch), local and Ray executors, resume, failures."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
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


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_sweep_failure_recorded_resume_and_rebind(tmp_path: Path) -> None:
    """w1 cannot train (the zoo needs >= 2 bits): recorded, the other point still trains."""
    out = tmp_path / "sw"
    statuses: list[str] = []
    res = run_sweep(
        "mlp",
        "digits",
        [1, 3],
        [4],
        "pynq-z2",
        out,
        epochs=1,
        on_point=lambda i, n, s: statuses.append(s),
    )
    assert sorted(statuses) == ["failed", "trained"]
    rows = _rows(res.csv_path)
    assert [(r["w_bits"], r["status"]) for r in rows] == [("1", "failed"), ("3", "ok")]
    assert "w-bits = 1" in rows[0]["error"] and "ConfigError" in rows[0]["error"]
    assert (out / "points" / "w1a4" / "error.txt").is_file()
    assert res.failed[0][:2] == (1, 4)
    assert 0.0 <= float(rows[1]["test_accuracy"]) <= 1.0 and int(rows[1]["lut"]) > 0
    assert rows[1]["checkpoint"] == "points/w3a4/model.ckpt"
    assert res.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the checkpoint is a normal one
    from qnet.checkpoint import load_checkpoint

    assert load_checkpoint(out / rows[1]["checkpoint"]).config.w_bits == 3
    # resumed on another board: the finished point is not retrained, the failed one is retried
    statuses.clear()
    res2 = run_sweep(
        "mlp",
        "digits",
        [1, 3],
        [4],
        "alveo-u250",
        out,
        epochs=1,
        on_point=lambda i, n, s: statuses.append(s),
    )
    assert sorted(statuses) == ["cached", "failed"]
    assert res2.points[0].test_accuracy == res.points[0].test_accuracy
    assert res2.points[0].lut == res.points[0].lut  # same graph, LUT-only design on both
    with pytest.raises(ConfigError, match="other training settings"):
        run_sweep("mlp", "digits", [3], [4], "pynq-z2", out, epochs=2, quiet=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        run_sweep("mlp", "digits", [3], [4], "pynq-z2", tmp_path / "other", epochs=1)


def test_executor_choice_errors() -> None:
    from qnet.executors import make_executor

    with pytest.raises(ConfigError, match="--executor"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--workers"):
        make_executor("local", workers=2)
    with pytest.raises(ConfigError, match="--workers"):
        make_executor("ray", workers=0)


def _sweep_cli(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from qnet.cli import main; main()",
        "sweep",
        "--model",
        "mlp",
        "--data",
        "digits",
        "--w-bits",
        "2,3,4",
        "--a-bits",
        "3,4",
        "--epochs",
        "1",
        "--board",
        "pynq-z2",
        "--out",
        str(out),
        "-q",
        *extra,
    ]


def test_ray_sweep_equals_local_and_resumes_after_kill(tmp_path: Path) -> None:
    """Ray (2 workers) and local give the same rows; a killed Ray sweep resumes with only the
    missing points.

    A warm point takes ~0.2 s, so the sweep is killed as soon as the first ``point.json``
    appears (polled every 20 ms); six points on two workers leave some unfinished however the
    driver batches its writes (three points once all finished inside a 0.5 s poll)."""
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    proc = subprocess.Popen(
        _sweep_cli(ray_out, "--executor", "ray", "--workers", "2"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 600
        while not list(ray_out.glob("points/*/point.json")):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no point finished in 10 minutes"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in ray_out.glob("points/*/point.json")}
    assert 1 <= len(finished) < 6 and not (ray_out / "sweep.csv").exists()

    statuses: list[str] = []
    from qnet.executors import RayExecutor

    with RayExecutor(workers=2) as runner:
        resumed = run_sweep(
            "mlp",
            "digits",
            [2, 3, 4],
            [3, 4],
            "pynq-z2",
            ray_out,
            epochs=1,
            executor=runner,
            on_point=lambda i, n, s: statuses.append(s),
        )
    assert statuses.count("cached") == len(finished)
    assert statuses.count("trained") == 6 - len(finished)
    for name, mtime in finished.items():  # finished points were not redone
        assert (ray_out / "points" / name / "point.json").stat().st_mtime_ns == mtime
    assert len(resumed.points) == 6 and not resumed.failed

    local = run_sweep("mlp", "digits", [2, 3, 4], [3, 4], "pynq-z2", local_out, epochs=1)
    assert _rows(local.csv_path) == _rows(resumed.csv_path)
