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
    import qnet.train_loop as qtrain

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
    from qnet.train_loop import _augment

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


# ---------------------------------------------------------------- issue 14: data that is not digits


def _signals_npz(tmp_path, n_train=120, n_test=40, length=16):
    """A tiny 1-D signal set (values ~N(0, 1) with outliers), as a user's .npz."""
    from qnet.data import synthetic_signals

    arrays = synthetic_signals(n_train=n_train, n_test=n_test, length=length, num_classes=3)
    path = tmp_path / "signals.npz"
    np.savez(path, **arrays)
    return str(path)


def _tiny_conv1d(dataset, **kw):
    return default_model_config(
        "convnet1d", dataset, w_bits=4, a_bits=4, channels=(4,), hidden=(8,), **kw
    )


def test_standardisation_is_part_of_the_model(tmp_path):
    path = _signals_npz(tmp_path)
    d = load_dataset(path, "convnet1d", val_fraction=0.25)
    config = _tiny_conv1d(d)
    assert config.standardize and config.in_signed and config.in_range == d.input_range
    res = train(config, TrainConfig(epochs=1, batch_size=32), d, tmp_path / "s", **FAST)
    ckpt = load_checkpoint(res.checkpoint_path)
    # the statistics travel with the model, as float32 buffers equal to the training split's
    np.testing.assert_array_equal(ckpt.model.mean.numpy(), d.mean)
    np.testing.assert_array_equal(ckpt.model.std.numpy(), d.std)
    assert ckpt.normalisation["method"] == "standardize"
    # every command feeds raw data: the model standardises exactly as (x - mean) / std
    from qnet.data import checkpoint_split

    _, x, y = checkpoint_split(ckpt, None, "test")
    np.testing.assert_array_equal(x, d.x_test)
    with torch.no_grad():
        got = ckpt.model(torch.from_numpy(x))
        z = (torch.from_numpy(x) - ckpt.model.mean) / ckpt.model.std
        want = ckpt.model.classifier(
            ckpt.model.flatten(ckpt.model.features(ckpt.model.input_quant(z)))
        )
    assert torch.equal(got, want)
    assert evaluate(ckpt.model, x, y) == res.metrics["test_accuracy"]
    _, xv, _ = checkpoint_split(ckpt, None, "val")
    np.testing.assert_array_equal(xv, d.x_val)  # the same carved validation split


def test_standardised_model_verifies_exactly(tmp_path):
    from qnet.data import checkpoint_split
    from qnet.evaluation import lower_checkpoint
    from qnet.hw import simulate

    path = _signals_npz(tmp_path)
    d = load_dataset(path, "convnet1d")
    res = train(_tiny_conv1d(d), TrainConfig(epochs=1, batch_size=32), d, tmp_path / "v", **FAST)
    ckpt = load_checkpoint(res.checkpoint_path)
    graph = lower_checkpoint(ckpt)
    _, x, _ = checkpoint_split(ckpt, None, "test")
    with torch.no_grad():
        want = ckpt.model(torch.from_numpy(x)).double().numpy()
    np.testing.assert_array_equal(simulate(graph, x.astype(np.float64)), want)


def test_val_fraction_zero_keeps_last_epoch(tmp_path, small):
    d = replace(small, x_val=None, y_val=None, val_fraction=0.0)
    res = train(_config(d), TrainConfig(epochs=2, batch_size=32), d, tmp_path / "z", **FAST)
    m = res.metrics
    assert "val_accuracy" not in m and m["best_epoch"] == 2 and m["num_val"] == 0
    assert len(m["history"]["test_accuracy"]) == 2 and "val_accuracy" not in m["history"]


def test_checkpoint_is_the_best_epoch_on_validation(tmp_path, small, monkeypatch):
    import qnet.train_loop as qtrain

    real = qtrain.evaluate
    scores = [0.5, 0.9, 0.7]  # epoch 2 is the best on validation
    seen = []  # the weights at the end of each epoch

    def fake(model, x, y, batch_size=512):
        if x is small.x_val and scores:
            seen.append({k: v.clone() for k, v in model.state_dict().items()})
            return scores.pop(0)
        return real(model, x, y, batch_size)

    monkeypatch.setattr(qtrain, "evaluate", fake)
    cfg = TrainConfig(epochs=3, batch_size=32)
    res = train(_config(small), cfg, small, tmp_path / "b", **FAST)
    monkeypatch.setattr(qtrain, "evaluate", real)
    assert res.metrics["best_epoch"] == 2 and res.metrics["epochs"] == 3
    ckpt = load_checkpoint(res.checkpoint_path)
    # the kept model is the one epoch 2 ended with, not the last one; --resume continues
    # from the last one
    _assert_same_weights(_weights(res.checkpoint_path), seen[1])
    last = ckpt.train_state["last_model"]
    assert any(not torch.equal(last[k], seen[1][k]) for k in last)
    _assert_same_weights(last, seen[2])
    assert evaluate(ckpt.model, small.x_test, small.y_test) == res.metrics["test_accuracy"]


def test_early_stopping(tmp_path, small, monkeypatch):
    import qnet.train_loop as qtrain

    real = qtrain.evaluate
    scores = [0.8, 0.6, 0.6, 0.9, 0.9]

    def fake(model, x, y, batch_size=512):
        if x is small.x_val and scores:
            return scores.pop(0)
        return real(model, x, y, batch_size)

    monkeypatch.setattr(qtrain, "evaluate", fake)
    res = train(
        _config(small), TrainConfig(epochs=5, batch_size=32, early_stopping=2), small,
        tmp_path / "e", **FAST,
    )  # fmt: skip
    assert res.metrics["epochs"] == 3 and res.metrics["stopped_early"]
    assert res.metrics["best_epoch"] == 1
    with pytest.raises(ConfigError, match="early-stopping"):
        TrainConfig(early_stopping=-1)


def test_float_baseline_never_overwrites_the_quantised_checkpoint(tmp_path):
    path = _signals_npz(tmp_path)
    d = load_dataset(path, "convnet1d")
    res = train(
        _tiny_conv1d(d), TrainConfig(epochs=1, batch_size=32), d, tmp_path / "f",
        float_baseline=True, **FAST,
    )  # fmt: skip
    out = tmp_path / "f"
    assert {p.name for p in out.iterdir()} == {"model.ckpt", "metrics.json", "training.png"}
    metrics = json.loads((out / "metrics.json").read_text())
    fb = metrics["float_baseline"]
    assert 0 <= fb["test_accuracy"] <= 1 and fb["seconds_per_epoch"] > 0
    assert metrics["quantisation_cost"] == pytest.approx(
        fb["test_accuracy"] - metrics["test_accuracy"]
    )
    ckpt = load_checkpoint(res.checkpoint_path)
    assert ckpt.config.quantize
    from brevitas.nn import QuantConv1d

    assert any(isinstance(m, QuantConv1d) for m in ckpt.model.modules())
    assert evaluate(ckpt.model, d.x_test, d.y_test) == metrics["test_accuracy"]


def test_float_twin_has_no_quantisers():
    from brevitas.nn.mixin.base import QuantLayerMixin

    from qnet.models import ModelConfig, build_model

    for config in (
        ModelConfig("convnet1d", (2, 16), 3, quantize=False, batchnorm=True, standardize=True),
        ModelConfig("lstm", (12, 2), 3, hidden=(8,), quantize=False),
        ModelConfig("mlp", (10,), 3, quantize=False),
    ):
        model = build_model(config)
        assert not any(isinstance(m, QuantLayerMixin) for m in model.modules())
        out = model(torch.randn(4, *config.in_shape))
        assert type(out) is torch.Tensor and out.shape == (4, 3)


def test_device(tmp_path, small):
    from qnet.train import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="--device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
    res = train(
        _config(small), TrainConfig(epochs=1, batch_size=32), small, tmp_path / "d",
        device="cpu", **FAST,
    )  # fmt: skip
    assert load_checkpoint(res.checkpoint_path).model.training is False


def test_architecture_options():
    from qnet.train import architecture_overrides, parse_sizes, prepare

    config, _ = prepare(
        "convnet1d", "digits-rows", channels=(4, 8), kernel_size=5, hidden=(12,),
        batchnorm=True, dropout=0.1,
    )  # fmt: skip
    assert (config.channels, config.kernel_size, config.hidden) == ((4, 8), 5, (12,))
    assert config.batchnorm and config.dropout == 0.1
    lstm, _ = prepare("lstm", "digits-rows", hidden=(16,))
    assert lstm.hidden == (16,)
    with pytest.raises(ConfigError, match="--channels, --batchnorm does not apply to --model lstm"):
        architecture_overrides("lstm", channels=(4,), batchnorm=True)
    with pytest.raises(ConfigError, match="one hidden size"):
        architecture_overrides("lstm", hidden=(16, 8))
    with pytest.raises(ConfigError, match="--kernel-size does not apply to --model mlp"):
        architecture_overrides("mlp", kernel_size=3)
    with pytest.raises(ConfigError, match="--channels"):
        parse_sizes("16,x", "--channels")
    assert parse_sizes("16, 32", "--channels") == (16, 32)


USER_MODEL = """
import torch
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import Int8WeightPerTensorFixedPoint


def model():
    net = torch.nn.Sequential(
        QuantIdentity(return_quant_tensor=True),
        torch.nn.Flatten(),
        QuantLinear(16, 12, bias=True, weight_quant=Int8WeightPerTensorFixedPoint),
        QuantReLU(),
        QuantLinear(12, 3, bias=True, weight_quant=Int8WeightPerTensorFixedPoint),
    )
    return net, torch.zeros(1, 16)


def plain():
    return torch.nn.Sequential(torch.nn.Linear(16, 3)), torch.zeros(1, 16)


def wrong_thing():
    return "a model"


def wrong_classes():
    net, x = model()
    return torch.nn.Sequential(net, torch.nn.Linear(3, 5)), x
"""


def test_user_model_trains_checkpoints_and_resumes(tmp_path, capsys):
    from qnet.train import prepare

    src = tmp_path / "mine.py"
    src.write_text(USER_MODEL)
    data = _signals_npz(tmp_path)
    spec = f"{src}:model"
    config, d = prepare(spec, data)
    assert config.kind == "user" and config.in_shape == (16,) and config.num_classes == 3
    assert d.input_norm == "none"  # a user's model gets the data as they are
    cfg = TrainConfig(epochs=2, batch_size=32)
    full = train(config, cfg, d, tmp_path / "u", float_baseline=True, **FAST)
    assert 0 <= full.metrics["float_baseline"]["test_accuracy"] <= 1
    ckpt = load_checkpoint(full.checkpoint_path)
    assert ckpt.config.source == f"{src.resolve()}:model"
    assert evaluate(ckpt.model, d.x_test, d.y_test) == full.metrics["test_accuracy"]
    train(config, replace(cfg, epochs=1), d, tmp_path / "p", **FAST)
    resumed = train(config, cfg, d, tmp_path / "p", resume=True, **FAST)
    _assert_same_weights(_weights(full.checkpoint_path), _weights(resumed.checkpoint_path))
    # the CLI: same path, standardised on request
    code, stdout, err = _qnet_inproc(
        capsys, "train", "--model", spec, "--data", data, "--epochs", "1", "--input-norm",
        "standardize", "--out", str(tmp_path / "cli"), "--quiet",
    )  # fmt: skip
    assert code == 0, err and "user model" in stdout
    std = load_checkpoint(tmp_path / "cli" / "model.ckpt")
    assert std.config.standardize and hasattr(std.model, "mean")
    code, stdout, err = _qnet_inproc(capsys, "evaluate", str(tmp_path / "cli" / "model.ckpt"))
    assert code == 0, err


@pytest.mark.parametrize(
    "func, words",
    [
        ("plain", ["no Brevitas quantised layer"]),
        ("wrong_thing", ["must return (model, example_input)"]),
        ("wrong_classes", ["(1, 5)", "(1, 3)", "3 classes"]),
        ("missing", ["no function missing()"]),
    ],
)
def test_user_model_errors(tmp_path, capsys, func, words):
    src = tmp_path / "mine.py"
    src.write_text(USER_MODEL)
    data = _signals_npz(tmp_path)
    code, _, err = _qnet_inproc(
        capsys, "train", "--model", f"{src}:{func}", "--data", data, "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err, err
    flat = " ".join(err.split())
    for word in words:
        assert word in flat, (word, err)
    assert not (tmp_path / "o").exists()


def test_user_model_architecture_options_refused(tmp_path, capsys):
    src = tmp_path / "mine.py"
    src.write_text(USER_MODEL)
    code, _, err = _qnet_inproc(
        capsys, "train", "--model", f"{src}:model", "--data", _signals_npz(tmp_path),
        "--channels", "4", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 2 and "user's own model defines its own architecture" in " ".join(err.split())


def test_warm_start_maps_the_float_lstm_onto_the_quant_lstm():
    """Every float weight lands on its gate (nn.LSTM's i, f, g, o rows -> Brevitas' gates)."""
    from qnet.models import ModelConfig, build_model
    from qnet.train import _load_float_weights

    config = ModelConfig("lstm", (6, 3), 4, hidden=(5,))
    float_model = build_model(replace(config, quantize=False))
    quant = build_model(config)
    _load_float_weights(quant, float_model.state_dict(), config)
    hs, layer = 5, quant.lstm.layers[0][0]
    for k, gate in enumerate(("input", "forget", "cell", "output")):
        params = getattr(layer, f"{gate}_gate_params")
        rows = slice(k * hs, (k + 1) * hs)
        assert torch.equal(params.input_weight.weight, float_model.lstm.weight_ih_l0[rows])
        assert torch.equal(params.hidden_weight.weight, float_model.lstm.weight_hh_l0[rows])
        want = float_model.lstm.bias_ih_l0[rows] + float_model.lstm.bias_hh_l0[rows]
        assert torch.equal(params.bias, want)
    assert torch.equal(quant.fc.weight, float_model.fc.weight)


def test_warm_start_runs_the_float_twin_once(tmp_path, monkeypatch):
    import qnet.train as qtrain

    d = load_dataset("digits-rows", "lstm", seed=0)
    d = replace(d, x_train=d.x_train[:96], y_train=d.y_train[:96], x_test=d.x_test[:40],
                y_test=d.y_test[:40])  # fmt: skip
    config = default_model_config("lstm", d, hidden=(6,))
    runs = []
    real = qtrain._float_run

    def counting(*args, **kwargs):
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(qtrain, "_float_run", counting)
    res = train(config, TrainConfig(epochs=1, batch_size=32), d, tmp_path / "w",
                float_baseline=True, **FAST)  # fmt: skip
    assert len(runs) == 1 and res.metrics["warm_start"] == "float"
    assert 0 <= res.metrics["float_baseline"]["test_accuracy"] <= 1
    # resuming reuses the recorded float run; warm_start="none" never runs it
    train(config, TrainConfig(epochs=2, batch_size=32), d, tmp_path / "w", resume=True,
          float_baseline=True, **FAST)  # fmt: skip
    assert len(runs) == 1
    cold = TrainConfig(epochs=1, batch_size=32, warm_start="none")
    assert "warm_start" not in train(config, cold, d, tmp_path / "c", **FAST).metrics
    assert len(runs) == 1
    with pytest.raises(ConfigError, match="warm-start"):
        TrainConfig(warm_start="yes")


def test_interrupt_in_the_float_twin_is_a_clean_error(tmp_path, small, monkeypatch):
    import qnet.train_loop as qloop

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(qloop, "evaluate", interrupt)
    cfg = TrainConfig(epochs=1, batch_size=32, warm_start="float")
    with pytest.raises(TrainingInterrupted, match="float twin.*nothing is saved"):
        train(_config(small), cfg, small, tmp_path / "i", **FAST)
    assert not any((tmp_path / "i").iterdir())
