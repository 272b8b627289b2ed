"""qnet.checkpoint: round trip, atomic writes, safe loading of bad files, kind checks."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import torch

from qnet.checkpoint import load_checkpoint, require_kind, save_checkpoint
from qnet.errors import CheckpointError
from qnet.models import ModelConfig, build_model


@pytest.fixture(scope="module")
def trained():
    """An LSTM and a ConvNet after a few training steps (statistics and learned scales moved)."""
    torch.manual_seed(0)
    models = {}
    for config in (
        ModelConfig("convnet2d", (1, 8, 8), 10, w_bits=3, a_bits=4, batchnorm=True),
        ModelConfig("lstm", (8, 8), 10, hidden=(8,)),
    ):
        model = build_model(config)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(40):  # crosses the statistics-collection boundary (30 steps)
            x = torch.rand(16, *config.in_shape)
            loss = torch.nn.functional.cross_entropy(model(x), torch.randint(0, 10, (16,)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        models[config.kind] = (config, model.eval())
    return models


@pytest.mark.parametrize("kind", ["convnet2d", "lstm"])
def test_round_trip_bit_exact(tmp_path, trained, kind):
    config, model = trained[kind]
    path = save_checkpoint(
        tmp_path / "m.ckpt",
        model,
        config,
        metrics={"test_accuracy": 0.5},
        data_spec="digits",
        normalisation={"scale": 0.0625, "offset": 0.0},
    )
    ckpt = load_checkpoint(path)
    assert ckpt.config == config
    assert ckpt.metrics == {"test_accuracy": 0.5}
    assert ckpt.data_spec == "digits" and ckpt.normalisation["scale"] == 0.0625
    assert ckpt.qnet_version
    assert not ckpt.model.training
    x = torch.rand(64, *config.in_shape)
    with torch.no_grad():
        np.testing.assert_array_equal(ckpt.model(x).numpy(), model(x).numpy())
    # and it is loadable with weights_only (safe for untrusted files)
    torch.load(path, weights_only=True)


def test_round_trip_during_statistics_collection(tmp_path):
    """A model saved before its activation statistics finished still reloads to equal outputs."""
    torch.manual_seed(1)
    config = ModelConfig("mlp", (64,), 10, hidden=(16,))
    model = build_model(config)
    for _ in range(5):
        model(torch.rand(8, 64))
    model.eval()
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "m.ckpt", model, config))
    x = torch.rand(32, 64)
    with torch.no_grad():
        np.testing.assert_array_equal(ckpt.model(x).numpy(), model(x).numpy())


def test_atomic_write_keeps_old_file_on_failure(tmp_path, trained, monkeypatch):
    config, model = trained["convnet2d"]
    path = save_checkpoint(tmp_path / "m.ckpt", model, config, metrics={"epochs": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, config, metrics={"epochs": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt"]  # no temp file left behind


def _write_payload(path, payload):
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p, ["no such checkpoint"]),
        (lambda p: (p.write_bytes(os.urandom(3000)), p)[1], ["not a readable qnet checkpoint"]),
        (lambda p: (p.write_bytes(b""), p)[1], ["not a readable"]),
        (lambda p: _write_payload(p, {"weights": torch.zeros(3)}), ["not a qnet checkpoint"]),
        (lambda p: _write_payload(p, [1, 2, 3]), ["not a qnet checkpoint"]),
        (
            lambda p: _write_payload(p, {"format": "qnet-checkpoint", "format_version": 99}),
            ["version 99"],
        ),
        (lambda p: (p.mkdir(), p)[1], ["not a file"]),
    ],
)
def test_bad_files_raise_checkpoint_error(tmp_path, make, words):
    path = make(tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    for word in words:
        assert word in str(info.value)
    assert str(path) in str(info.value)


def test_truncated_checkpoint(tmp_path, trained):
    config, model = trained["convnet2d"]
    path = save_checkpoint(tmp_path / "m.ckpt", model, config)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_checkpoint(path)


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.ckpt"
    torch.save({"format": "qnet-checkpoint", "x": Evil()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_weights_not_matching_config(tmp_path, trained):
    config, model = trained["convnet2d"]
    path = save_checkpoint(tmp_path / "m.ckpt", model, config)
    payload = torch.load(path, weights_only=True)
    payload["config"]["channels"] = [8, 8]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(path)
    assert zipfile.is_zipfile(path)


def test_require_kind(tmp_path, trained):
    config, model = trained["lstm"]
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "m.ckpt", model, config))
    assert require_kind(ckpt, ("lstm", "mlp")) is ckpt
    with pytest.raises(
        CheckpointError, match="holds a lstm model; this command needs convnet2d or convnet1d"
    ):
        require_kind(ckpt, ("convnet2d", "convnet1d"))
