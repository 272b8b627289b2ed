"""qnet search: Optuna over per-layer bits, resumable study, failures recorded, Ray executor."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import qnet.search
from qnet.errors import ConfigError
from qnet.models import ModelConfig
from qnet.search import run_search


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_per_layer_bits_config() -> None:
    cfg = ModelConfig(
        kind="convnet2d",
        in_shape=(1, 8, 8),
        num_classes=10,
        layer_w_bits=[2, 3, 4, 5],
        layer_a_bits=(6, 7, 8),
    )
    assert cfg.layer_w_bits == (2, 3, 4, 5) and cfg.n_weighted == 4 and cfg.n_activations == 3
    assert [cfg.w_bits_at(i) for i in range(4)] == [2, 3, 4, 5]
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig(kind="mlp", in_shape=(64,), num_classes=10).w_bits_at(1) == 4
    for kwargs, match in (
        ({"layer_w_bits": (2, 3)}, "has 2 entries; this convnet2d has 4"),
        ({"layer_a_bits": (2, 9, 4)}, "9 is not supported"),
    ):
        with pytest.raises(ConfigError, match=match):
            ModelConfig(kind="convnet2d", in_shape=(1, 8, 8), num_classes=10, **kwargs)


def test_per_layer_bits_reach_the_hardware_graph() -> None:
    import torch

    import qnet
    from qnet.models import build_model

    cfg = ModelConfig(
        kind="mlp",
        in_shape=(64,),
        num_classes=10,
        hidden=(16, 8),
        layer_w_bits=(2, 5, 7),
        layer_a_bits=(3, 6),
    )
    model = build_model(cfg).eval()
    graph = qnet.lower(model, torch.zeros(1, 64))
    dense = [layer for layer in graph.layers if layer.kind == "dense"]
    relus = [layer for layer in graph.layers if layer.kind == "relu"]
    assert [d.weight_type.width for d in dense] == [2, 5, 7]
    assert [r.out_type.width for r in relus] == [3, 6]


def test_search_local_resume_and_failure(tmp_path: Path, monkeypatch) -> None:
    calls: list[dict] = []
    real = qnet.search.train_point_task

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise RuntimeError("injected failure of the second trial")
        return real(**kwargs)

    monkeypatch.setattr(qnet.search, "train_point_task", flaky)
    out = tmp_path / "search"
    res = run_search("mlp", "digits", "pynq-z2", out, trials=3, epochs=1, bits=(2, 4, 8))
    rows = _rows(res.csv_path)
    assert len(rows) == 3 and len(calls) == 3
    assert [r["state"] for r in rows] == ["complete", "failed", "complete"]
    assert "injected failure" in rows[1]["error"]
    assert (out / "trials" / "trial-0001" / "error.txt").is_file()
    assert set(rows[0]) >= {"w0", "w1", "a0", "accuracy", "lut", "latency_us", "pareto"}
    assert any(r["pareto"] == "true" for r in rows) and rows[1]["pareto"] == "false"
    assert res.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each trial is a normal checkpoint with its per-layer bits
    from qnet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(out / rows[0]["checkpoint"])
    assert list(ckpt.config.layer_w_bits) == [int(rows[0]["w0"]), int(rows[0]["w1"])]
    assert list(ckpt.config.layer_a_bits) == [int(rows[0]["a0"])]

    # running again continues the study: only the one missing trial trains
    res2 = run_search("mlp", "digits", "pynq-z2", out, trials=4, epochs=1, bits=(2, 4, 8))
    assert len(calls) == 4 and len(res2.rows) == 4
    assert _rows(res2.csv_path)[:3] == [
        {**r, "pareto": r2["pareto"]} for r, r2 in zip(rows, _rows(res2.csv_path), strict=False)
    ]
    # a trial left RUNNING by a killed run is redone with the same parameters
    import optuna

    study = optuna.load_study(study_name="qnet-search", storage=f"sqlite:///{res2.db_path}")
    stale = study.ask()
    for i in range(2):
        stale.suggest_categorical(f"w{i}", [2, 4, 8])
    stale.suggest_categorical("a0", [2, 4, 8])
    res3 = run_search("mlp", "digits", "pynq-z2", out, trials=5, epochs=1, bits=(2, 4, 8))
    assert len(calls) == 5
    last = res3.rows[-1]
    assert [last["w0"], last["w1"], last["a0"]] == [stale.params[k] for k in ("w0", "w1", "a0")]
    with pytest.raises(ConfigError, match="other settings"):
        run_search("mlp", "digits", "pynq-z2", out, trials=5, epochs=2, bits=(2, 4, 8))


def test_search_rejects_bad_options(tmp_path: Path) -> None:
    for kwargs, match in (
        ({"model": "lstm"}, "not 'lstm'"),
        ({"objective": "power"}, "--objective"),
        ({"trials": 0}, "--trials"),
        ({"bits": (1, 4)}, "--bits"),
    ):
        args = {"model": "mlp", **kwargs}
        with pytest.raises(ConfigError, match=match):
            run_search(args.pop("model"), "digits", "pynq-z2", tmp_path / "x", **args)


@pytest.mark.slow
def test_search_on_ray(tmp_path: Path) -> None:
    from qnet.executors import RayExecutor

    with RayExecutor(workers=2) as runner:
        res = run_search(
            "mlp", "digits", "pynq-z2", tmp_path / "s", trials=4, epochs=1, executor=runner
        )
    assert len(res.rows) == 4 and all(r["state"] == "complete" for r in res.rows)
    assert res.pareto


def test_search_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    def qnet(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-c", "from qnet.cli import main; main()", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    out = tmp_path / "s"
    common = ["search", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", str(out)]
    bad = qnet(*common, "--trials", "1", "--workers", "2")
    assert bad.returncode == 2 and "--executor ray" in bad.stderr and "Traceback" not in bad.stderr
    ok = qnet(*common, "--trials", "1", "-q")
    assert ok.returncode == 0, ok.stderr
    assert "Pareto front" in ok.stdout and len(_rows(out / "trials.csv")) == 1
