"""qnet.evaluation and every command that reads a checkpoint's data: the training run's split.

A model trained with ``--seed 3`` on a built-in data set has its own train/test split; scoring
it on split seed 0 would count training samples as test samples. The checkpoint records the
split seed (``normalisation["split_seed"]``) and every command uses it unless told otherwise.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from qnet.checkpoint import load_checkpoint, save_checkpoint
from qnet.data import checkpoint_split, checkpoint_stream, load_dataset
from qnet.evaluation import simulate_checkpoint
from qnet.models import build_model
from qnet.train import default_model_config, evaluate

SEED = 3


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory: pytest.TempPathFactory):
    """A 4-bit MLP checkpoint on digits split with seed 3 (calibrated, not trained: cheap)."""
    from qnet.models._quant import COLLECT_STATS_STEPS

    data = load_dataset("digits", "mlp", seed=SEED)
    config = default_model_config("mlp", data, hidden=(16,))
    torch.manual_seed(0)
    model = build_model(config).train()
    with torch.no_grad():  # the activation quantisers collect their statistics
        for _ in range(COLLECT_STATS_STEPS + 1):
            model(torch.from_numpy(data.x_train[:64]))
    model.eval()
    path = tmp_path_factory.mktemp("seed") / "model.ckpt"
    save_checkpoint(
        path, model, config, data_spec="digits", normalisation=data.normalisation, metrics={}
    )
    return path


def _test_x(seed: int) -> np.ndarray:
    return load_dataset("digits", "mlp", seed=seed).x_test


def test_the_splits_differ_by_seed():
    """Otherwise the tests below could not fail."""
    assert not np.array_equal(_test_x(SEED), _test_x(0))


def test_checkpoint_records_the_split_seed(ckpt_path):
    assert load_checkpoint(ckpt_path).normalisation["split_seed"] == SEED


def test_stream_and_split_use_the_recorded_seed(ckpt_path):
    ckpt = load_checkpoint(ckpt_path)
    want = _test_x(SEED)
    stream = checkpoint_stream(ckpt)
    got = np.concatenate([xb for xb, _ in stream.batches(100)])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(checkpoint_split(ckpt)[1], want)
    # an explicit seed still overrides it
    np.testing.assert_array_equal(checkpoint_stream(ckpt, seed=0).x, _test_x(0))


def test_simulate_checkpoint_scores_the_training_runs_test_split(ckpt_path):
    ckpt = load_checkpoint(ckpt_path)
    data = load_dataset("digits", "mlp", seed=SEED)
    report = simulate_checkpoint(ckpt)
    assert report.samples == len(data.y_test)
    assert report.brevitas_accuracy == evaluate(ckpt.model, data.x_test, data.y_test)


def test_tb_and_verification_inputs_come_from_the_training_runs_test_split(ckpt_path):
    from qnet.projects import tb_inputs
    from qnet.sources import load_graph
    from qnet.verification import verification_inputs

    source, x, where = verification_inputs(str(ckpt_path), 20)
    np.testing.assert_array_equal(x, _test_x(SEED)[:20])
    assert "digits" in where
    graph = load_graph(str(ckpt_path))
    tb = tb_inputs(source, graph, 8)
    np.testing.assert_array_equal(tb, np.asarray(graph.preprocess(_test_x(SEED)[:8])))


def test_cli_simulate_uses_the_recorded_seed(ckpt_path):
    cli = [sys.executable, "-c", "from qnet.cli import main; main()", "simulate"]
    out = subprocess.run(
        [*cli, str(ckpt_path)], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    data = load_dataset("digits", "mlp", seed=SEED)
    acc = evaluate(load_checkpoint(ckpt_path).model, data.x_test, data.y_test)
    assert f"brevitas accuracy:  {acc:.4f}" in out
    assert f"exact outputs:      {len(data.y_test) * 10} / {len(data.y_test) * 10}" in out


def test_npz_val_and_train_splits_are_the_carved_parts(tmp_path) -> None:  # noqa: ANN001
    """An .npz without x_val: training carved --val-fraction out of x_train; `--split val` /
    `--split train` must read exactly those rows (not x_val from the file, nor all of x_train)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=rng.standard_normal((200, 10)).astype(np.float32),
        y_train=rng.integers(0, 3, 200),
        x_test=rng.standard_normal((50, 10)).astype(np.float32),
        y_test=rng.integers(0, 3, 50),
    )
    data = load_dataset(str(path), "mlp", seed=SEED, val_fraction=0.2)
    assert data.x_val is not None and len(data.x_val) == 40
    config = default_model_config("mlp", data, hidden=(8,))
    from qnet.models._quant import COLLECT_STATS_STEPS

    torch.manual_seed(0)
    model = build_model(config).train()
    with torch.no_grad():
        for _ in range(COLLECT_STATS_STEPS + 1):
            model(torch.from_numpy(data.x_train[:64]))
    model.eval()
    ckpt = tmp_path / "m.ckpt"
    save_checkpoint(
        ckpt, model, config, data_spec=str(path), normalisation=data.normalisation, metrics={}
    )
    loaded = load_checkpoint(ckpt)
    for split, want_x, want_y in (
        ("val", data.x_val, data.y_val),
        ("train", data.x_train, data.y_train),
        ("test", data.x_test, data.y_test),
    ):
        stream = checkpoint_stream(loaded, split=split)
        parts = list(stream.batches(16))
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), want_x)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), want_y)
