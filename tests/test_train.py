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


# One torch thread: these tiny runs gain nothing from two, and contending threads spin on a
# loaded machine. The determinism test keeps the default thread count.
FAST = {"quiet": True, "num_threads": 1}


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
    res = train(_config(small), TrainConfig(epochs=1, batch_size=32), small, tmp_path / "o", **FAST)
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
    full = train(_config(small), cfg, small, tmp_path / "full", **FAST)
    train(_config(small), replace(cfg, epochs=1), small, tmp_path / "part", **FAST)
    resumed = train(_config(small), cfg, small, tmp_path / "part", resume=True, **FAST)
    _assert_same_weights(_weights(full.checkpoint_path), _weights(resumed.checkpoint_path))
    assert resumed.metrics["history"]["loss"] == full.metrics["history"]["loss"]


def test_interrupt_keeps_last_complete_checkpoint(tmp_path, small, monkeypatch):
    cfg = TrainConfig(epochs=3, batch_size=32, seed=2)
    out = tmp_path / "int"
    train(_config(small), replace(cfg, epochs=1), small, out, **FAST)
    before = (out / "model.ckpt").read_bytes()
    import qnet.train as qtrain

    calls = {"n": 0}
    real = qtrain.evaluate

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(qtrain, "evaluate", interrupt)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(_config(small), cfg, small, out, resume=True, **FAST)
    monkeypatch.setattr(qtrain, "evaluate", real)
    assert (out / "model.ckpt").read_bytes() == before
    assert load_checkpoint(out / "model.ckpt").train_state["epoch"] == 1


def test_refuses_non_empty_out(tmp_path, small):
    out = tmp_path / "x"
    out.mkdir()
    (out / "note.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        train(_config(small), TrainConfig(epochs=1), small, out, **FAST)
    with pytest.raises(CheckpointError, match="no model.ckpt"):
        train(_config(small), TrainConfig(epochs=1), small, out, resume=True, **FAST)


def test_num_threads_validated(tmp_path, small):
    with pytest.raises(ConfigError, match="num_threads"):
        train(
            _config(small), TrainConfig(epochs=1), small, tmp_path / "t", quiet=True, num_threads=0
        )
    assert not (tmp_path / "t").exists()


def test_resume_with_other_settings_refused(tmp_path, small):
    out = tmp_path / "r"
    train(_config(small), TrainConfig(epochs=1, batch_size=32), small, out, **FAST)
    with pytest.raises(CheckpointError, match="batch_size"):
        train(
            _config(small),
            TrainConfig(epochs=2, batch_size=16),
            small,
            out,
            resume=True,
            **FAST,
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
    with pytest.raises(ConfigError, match="shift-prob"):
        TrainConfig(shift_prob=1.5)
    with pytest.raises(ConfigError, match="noise-std"):
        TrainConfig(noise_std=-0.1)
    with pytest.raises(ConfigError, match="label-smoothing"):
        TrainConfig(label_smoothing=1.0)


def test_default_model_config_per_bit_width(small):
    four = default_model_config("convnet2d", small)
    two = default_model_config("convnet2d", small, w_bits=2, a_bits=2)
    mixed = default_model_config("convnet2d", small, w_bits=4, a_bits=2)
    assert (four.w_bits, four.a_bits, four.in_bits) == (4, 4, 8) and not four.batchnorm
    assert two.in_bits == 8  # the input stays 8-bit at any weight/activation width
    for narrow in (two, mixed):  # 2-bit layers get more channels and hidden units
        assert all(n > f for n, f in zip(narrow.channels, four.channels, strict=True))
        assert narrow.hidden[0] > four.hidden[0]
    assert default_model_config("convnet2d", small, w_bits=2, channels=(4, 8)).channels == (4, 8)
    lstm = default_model_config("lstm", load_dataset("digits-rows", "lstm"))
    assert len(lstm.hidden) == 1 and lstm.in_shape == (8, 8)


def test_augment_shifts_a_fraction_and_adds_noise():
    from qnet.train import _augment

    torch.manual_seed(0)
    x = torch.rand(3000, 1, 8, 8) * 0.8 + 0.1  # no pixel near the clip limits
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(_augment(x, gen, (8, 8), 0.0, 0.0), x)

    def shifts(y):
        """Per sample, the (dy, dx) in {-1, 0, 1}^2 that maps x to y, or None."""
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
        found = [None] * len(x)
        for dy in range(3):
            for dx in range(3):
                same = (padded[:, :, dy : dy + 8, dx : dx + 8] == y).flatten(1).all(1)
                for i in torch.nonzero(same).flatten().tolist():
                    found[i] = (dy - 1, dx - 1)
        return found

    always = shifts(_augment(x, gen, (8, 8), 1.0, 0.0))
    assert None not in always
    # 1/9 of the shifted samples draw (0, 0)
    assert abs(sum(s == (0, 0) for s in always) / len(x) - 1 / 9) < 0.03
    half = shifts(_augment(x, gen, (8, 8), 0.5, 0.0))
    assert None not in half
    assert abs(sum(s == (0, 0) for s in half) / len(x) - (0.5 + 0.5 / 9)) < 0.04
    noisy = _augment(x, gen, (8, 8), 0.0, 0.05)
    assert abs(float((noisy - x).std()) - 0.05) < 0.005


def _qnet(*args, cwd=None):
    """The real console entry point in a fresh interpreter (exit code as the shell sees it)."""
    return subprocess.run(
        [sys.executable, "-c", "from qnet.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def _qnet_inproc(capsys, *args):
    """``qnet.cli.main`` in this process: (exit code, stdout, stderr); no interpreter start-up."""
    from qnet.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    code = exc.value.code
    return (0 if code is None else code), out, err


def test_cli_train_evaluate_and_exit_codes(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _qnet_inproc(
        capsys,
        "train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "test accuracy" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    code, stdout, err = _qnet_inproc(capsys, "evaluate", str(out / "model.ckpt"))
    assert code == 0, err
    assert f"{100 * metrics['test_accuracy']:.2f} %" in stdout

    # one run through a fresh interpreter: the process exit code and a traceback-free message
    again = _qnet("train", "--model", "mlp", "--epochs", "1", "--out", str(out), "--quiet")
    assert (
        again.returncode == 2
        and "OutputExistsError" in again.stderr
        and "Traceback" not in again.stderr
    )

    code, _, err = _qnet_inproc(
        capsys, "train", "--model", "mlp", "--w-bits", "9", "--out", str(tmp_path / "b")
    )
    assert code == 2 and "w-bits" in err and "2..8" in err

    code, _, err = _qnet_inproc(capsys, "train", "--model", "resnet", "--out", str(tmp_path / "k"))
    assert code == 2 and "resnet" in err

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = _qnet_inproc(capsys, "evaluate", str(bad))
    assert code == 2 and "CheckpointError" in err and "Traceback" not in err

    code, _, err = _qnet_inproc(
        capsys,
        "train", "--model", "mlp", "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "d"),
    )  # fmt: skip
    assert code == 2 and "DataError" in err

    code, _, err = _qnet_inproc(
        capsys, "evaluate", str(out / "model.ckpt"), "--data", "digits-rows"
    )
    assert code == 0, err  # mlp flattens rows too: same 64 features

    assert not (tmp_path / "b").exists() and not (tmp_path / "k").exists()
    np.testing.assert_equal(metrics["epochs"], 1)
