"""qnet.train and the ``qnet train`` / ``qnet evaluate`` CLI: determinism, resume, outputs, exits."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from qnet.checkpoint import load_checkpoint
from qnet.data import load_dataset
from qnet.errors import CheckpointError, ConfigError, OutputExistsError
from qnet.train import TrainConfig, TrainingInterrupted, default_model_config, evaluate, train


@pytest.fixture(scope="module")
def small():
    """digits for convnet2d cut to 160 training / 60 test samples (fast, augmentation on)."""
    d = load_dataset("digits", "convnet2d", seed=0)
    return replace(
        d,
        x_train=d.x_train[:160],
        y_train=d.y_train[:160],
        x_test=d.x_test[:60],
        y_test=d.y_test[:60],
    )


def _config(dataset):
    return default_model_config(
        "convnet2d", dataset, w_bits=3, a_bits=3, channels=(4, 8), hidden=(16,)
    )


def _weights(path):
    return {k: v for k, v in load_checkpoint(path).model.state_dict().items()}


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_same_seed_bit_identical_different_seed_differs(tmp_path, small):
    cfg = TrainConfig(epochs=2, batch_size=32, seed=7)
    r1 = train(_config(small), cfg, small, tmp_path / "a", quiet=True)
    r2 = train(_config(small), cfg, small, tmp_path / "b", quiet=True)
    r3 = train(_config(small), replace(cfg, seed=8), small, tmp_path / "c", quiet=True)
    w1, w2, w3 = (_weights(r.checkpoint_path) for r in (r1, r2, r3))
    _assert_same_weights(w1, w2)
    assert any(not torch.equal(w1[k], w3[k]) for k in w1)
    assert r1.metrics["test_accuracy"] == r2.metrics["test_accuracy"]


def test_outputs_written(tmp_path, small):
    res = train(
        _config(small), TrainConfig(epochs=1, batch_size=32), small, tmp_path / "o", quiet=True
    )
    out = tmp_path / "o"
    assert {p.name for p in out.iterdir()} == {"model.ckpt", "metrics.json", "training.png"}
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "train_accuracy", "epochs", "seconds"):
        assert key in metrics
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["epochs"] == 1
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = load_checkpoint(res.checkpoint_path)
    # the stored metrics match an independent evaluation of the reloaded model
    assert evaluate(ckpt.model, small.x_test, small.y_test) == metrics["test_accuracy"]
    assert ckpt.normalisation["scale"] == 1 / 16 and ckpt.data_spec == "digits"


def test_resume_equals_uninterrupted(tmp_path, small):
    cfg = TrainConfig(epochs=3, batch_size=32, seed=1)
    full = train(_config(small), cfg, small, tmp_path / "full", quiet=True)
    train(_config(small), replace(cfg, epochs=1), small, tmp_path / "part", quiet=True)
    resumed = train(_config(small), cfg, small, tmp_path / "part", resume=True, quiet=True)
    _assert_same_weights(_weights(full.checkpoint_path), _weights(resumed.checkpoint_path))
    assert resumed.metrics["history"]["loss"] == full.metrics["history"]["loss"]


def test_interrupt_keeps_last_complete_checkpoint(tmp_path, small, monkeypatch):
    cfg = TrainConfig(epochs=3, batch_size=32, seed=2)
    out = tmp_path / "int"
    train(_config(small), replace(cfg, epochs=1), small, out, quiet=True)
    before = (out / "model.ckpt").read_bytes()
    import qnet.train as qtrain

    calls = {"n": 0}
    real = qtrain.evaluate

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(qtrain, "evaluate", interrupt)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(_config(small), cfg, small, out, resume=True, quiet=True)
    monkeypatch.setattr(qtrain, "evaluate", real)
    assert (out / "model.ckpt").read_bytes() == before
    assert load_checkpoint(out / "model.ckpt").train_state["epoch"] == 1


def test_refuses_non_empty_out(tmp_path, small):
    out = tmp_path / "x"
    out.mkdir()
    (out / "note.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        train(_config(small), TrainConfig(epochs=1), small, out, quiet=True)
    with pytest.raises(CheckpointError, match="no model.ckpt"):
        train(_config(small), TrainConfig(epochs=1), small, out, resume=True, quiet=True)


def test_resume_with_other_settings_refused(tmp_path, small):
    out = tmp_path / "r"
    train(_config(small), TrainConfig(epochs=1, batch_size=32), small, out, quiet=True)
    with pytest.raises(CheckpointError, match="batch_size"):
        train(
            _config(small),
            TrainConfig(epochs=2, batch_size=16),
            small,
            out,
            resume=True,
            quiet=True,
        )


def test_train_config_validation():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=-1.0)


def _qnet(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", "from qnet.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_cli_train_evaluate_and_exit_codes(tmp_path):
    out = tmp_path / "run"
    ok = _qnet(
        "train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", str(out), "--quiet"
    )
    assert ok.returncode == 0, ok.stderr
    assert "test accuracy" in ok.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    ev = _qnet("evaluate", str(out / "model.ckpt"))
    assert ev.returncode == 0, ev.stderr
    assert f"{100 * metrics['test_accuracy']:.2f} %" in ev.stdout

    again = _qnet("train", "--model", "mlp", "--epochs", "1", "--out", str(out), "--quiet")
    assert (
        again.returncode == 2
        and "OutputExistsError" in again.stderr
        and "Traceback" not in again.stderr
    )

    bits = _qnet("train", "--model", "mlp", "--w-bits", "9", "--out", str(tmp_path / "b"))
    assert bits.returncode == 2 and "w-bits" in bits.stderr and "2..8" in bits.stderr

    kind = _qnet("train", "--model", "resnet", "--out", str(tmp_path / "k"))
    assert kind.returncode == 2 and "resnet" in kind.stderr

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00" * 100)
    ev_bad = _qnet("evaluate", str(bad))
    assert (
        ev_bad.returncode == 2
        and "CheckpointError" in ev_bad.stderr
        and "Traceback" not in ev_bad.stderr
    )

    data = _qnet(
        "train",
        "--model",
        "mlp",
        "--data",
        str(tmp_path / "none.npz"),
        "--out",
        str(tmp_path / "d"),
    )
    assert data.returncode == 2 and "DataError" in data.stderr

    shape = _qnet("evaluate", str(out / "model.ckpt"), "--data", "digits-rows")
    assert shape.returncode == 0  # mlp flattens rows too: same 64 features

    assert not (tmp_path / "b").exists() and not (tmp_path / "k").exists()
    np.testing.assert_equal(metrics["epochs"], 1)
