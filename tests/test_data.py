"""qnet.data: built-in digits layouts and every DataError case of user .npz files."""

from __future__ import annotations

import numpy as np
import pytest

from qnet.data import load_dataset
from qnet.errors import DataError


def _arrays(n_train=20, n_test=10, shape=(8, 8), k=3):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.random((n_train, *shape)),
        "y_train": np.arange(n_train) % k,
        "x_test": rng.random((n_test, *shape)),
        "y_test": np.arange(n_test) % k,
    }


def _save(tmp_path, arrays, name="d.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    "kind, shape",
    [("convnet2d", (1, 8, 8)), ("convnet1d", (8, 8)), ("lstm", (8, 8)), ("mlp", (64,))],
)
def test_digits_layouts(kind, shape):
    d = load_dataset("digits", kind, seed=0)
    assert d.in_shape == shape
    # 10 % of the 1437 training images are carved out for validation
    assert d.x_train.shape == (1293, *shape) and d.x_val.shape == (144, *shape)
    assert d.x_test.shape == (360, *shape)
    assert d.x_train.dtype == np.float32
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    assert d.input_norm == "none" and not d.input_signed and d.input_range == 1.0
    assert d.num_classes == 10
    # pixel / 16: every value lies on the 1/16 grid
    np.testing.assert_array_equal(d.x_train * 16, np.round(d.x_train * 16))


def test_digits_rows_is_rows_as_time():
    from sklearn.datasets import load_digits

    lstm = load_dataset("digits-rows", "lstm", seed=3)
    conv1d = load_dataset("digits-rows", "convnet1d", seed=3)
    np.testing.assert_array_equal(conv1d.x_train, lstm.x_train.transpose(0, 2, 1))
    images = load_digits().images / 16.0
    # each training sample is one digit image, rows as time steps
    first = lstm.x_train[0]
    assert any(np.array_equal(first, img.astype(np.float32)) for img in images)


def test_split_fixed_by_seed_and_stratified():
    a, b, c = (load_dataset("digits", "mlp", seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.y_test, b.y_test)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_test, c.y_test)
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_npz_layouts_and_normalisation(tmp_path):
    arrays = _arrays()
    arrays["x_train"] = arrays["x_train"] * 10 - 5
    path = _save(tmp_path, arrays)
    d = load_dataset(path, "convnet2d", val_fraction=0)
    assert d.in_shape == (1, 8, 8) and d.num_classes == 3
    # standardised inside the model: the arrays stay raw, the statistics come with them
    assert d.input_norm == "standardize" and d.input_signed
    np.testing.assert_array_equal(d.x_test[:, 0], arrays["x_test"].astype(np.float32))
    assert d.mean.shape == (1, 1, 1) and d.std.shape == (1, 1, 1)
    np.testing.assert_allclose(d.mean.item(), arrays["x_train"].mean(), rtol=1e-6)
    np.testing.assert_allclose(d.std.item(), arrays["x_train"].std(), rtol=1e-6)
    z = (d.x_train - d.mean) / d.std
    r = d.input_range  # the power of two just covering the 99.9th percentile of |z|
    assert r == 2 ** np.ceil(np.log2(np.percentile(np.abs(z), 99.9))) and r / 2 < np.abs(z).max()
    mm = load_dataset(path, "convnet2d", input_norm="minmax", val_fraction=0)
    assert mm.x_train.min() == 0.0 and mm.x_train.max() == 1.0 and not mm.input_signed
    np.testing.assert_allclose(
        mm.normalise(arrays["x_test"])[:, None], mm.x_test, rtol=0, atol=1e-6
    )
    assert load_dataset(path, "lstm").in_shape == (8, 8)
    assert load_dataset(path, "convnet1d").in_shape == (8, 8)
    assert load_dataset(path, "mlp").in_shape == (64,)
    path2 = _save(tmp_path, _arrays(shape=(12,)), "seq.npz")
    assert load_dataset(path2, "lstm").in_shape == (12, 1)
    assert load_dataset(path2, "convnet1d").in_shape == (1, 12)


def test_npz_validation_split(tmp_path):
    arrays = _arrays()
    arrays["x_val"] = arrays["x_test"][:4]
    arrays["y_val"] = arrays["y_test"][:4]
    d = load_dataset(_save(tmp_path, arrays), "mlp")
    assert d.x_val.shape == (4, 64) and d.y_val.tolist() == arrays["y_val"].tolist()
    assert d.x_train.shape == (20, 64) and d.val_fraction is None  # the file's own: no carving


def test_val_fraction_carves_training_data(tmp_path):
    arrays = _arrays(n_train=40, shape=(6,))
    path = _save(tmp_path, arrays)
    d = load_dataset(path, "lstm", val_fraction=0.25, seed=3)
    assert len(d.x_train) == 30 and len(d.x_val) == 10 and d.val_fraction == 0.25
    both = np.concatenate([d.x_train, d.x_val])[:, :, 0]
    # a partition of the training data: every sample exactly once, none of the test split
    key = lambda a: sorted(map(tuple, np.round(a, 6)))  # noqa: E731
    assert key(both) == key(arrays["x_train"].astype(np.float32))
    assert sorted(np.bincount(d.y_val).tolist()) == [3, 3, 4]  # stratified
    # statistics from what is left of the training split, not from the validation samples
    np.testing.assert_allclose(d.mean[0, 0], d.x_train.mean(), rtol=1e-5)
    again = load_dataset(path, "lstm", val_fraction=0.25, seed=3)
    np.testing.assert_array_equal(again.x_val, d.x_val)
    none = load_dataset(path, "lstm", val_fraction=0)
    assert none.x_val is None and len(none.x_train) == 40
    with pytest.raises(DataError, match="val-fraction"):
        load_dataset(path, "lstm", val_fraction=1.0)
    with pytest.raises(DataError, match="at least one"):
        load_dataset(_save(tmp_path, _arrays(n_train=3, k=2), "tiny.npz"), "mlp", val_fraction=0.1)


def test_standardisation_statistics_per_channel_and_feature(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3, 7)) * np.array([1.0, 10.0, 0.1])[None, :, None] + 4
    arrays = {"x_train": x, "y_train": np.arange(50) % 2, "x_test": x[:5], "y_test": np.zeros(5)}
    path = _save(tmp_path, arrays)
    conv = load_dataset(path, "convnet1d", val_fraction=0)  # channels = axis 1
    assert conv.mean.shape == (3, 1)
    np.testing.assert_allclose(conv.std[:, 0], x.std(axis=(0, 2)), rtol=1e-5)
    lstm = load_dataset(path, "lstm", val_fraction=0)  # features = last axis
    assert lstm.mean.shape == (1, 7)
    np.testing.assert_allclose(lstm.mean[0], x.mean(axis=(0, 1)), rtol=1e-5)
    arrays["x_train"] = np.where(np.arange(7) == 0, 1.0, x)  # a constant feature: std 1, not 0
    const = load_dataset(_save(tmp_path, arrays, "c.npz"), "lstm", val_fraction=0)
    # std 1 (times the range the lstm folds into std), not 0
    np.testing.assert_allclose(const.std[0, 0] / const.std[0, 1], 1.0 / x[:, :, 1].std(), rtol=1e-5)


def test_digits_seq_is_a_64_step_sequence():
    d = load_dataset("digits-seq", "lstm", val_fraction=0)
    rows = load_dataset("digits-rows", "lstm", val_fraction=0)
    assert d.in_shape == (64, 1)
    np.testing.assert_array_equal(d.x_train[:, :, 0], rows.x_train.reshape(len(rows.x_train), 64))
    assert load_dataset("digits-seq", "convnet1d").in_shape == (1, 64)
    with pytest.raises(DataError, match="digits-seq"):
        load_dataset("digits-seq", "convnet2d")


def _mutate(key, value):
    def f(arrays):
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
        return arrays

    return f


@pytest.mark.parametrize(
    "mutate, words",
    [
        (_mutate("y_test", None), ["y_test", "missing"]),
        (_mutate("x_train", None), ["x_train", "missing"]),
        (_mutate("x_train", np.zeros((20, 8, 8, 2, 2))), ["x_train", "rank"]),
        (_mutate("y_train", np.zeros((20, 2), dtype=int)), ["y_train", "1-D"]),
        (_mutate("y_test", np.arange(9) % 3), ["x_test", "10", "y_test", "9"]),
        (_mutate("x_test", np.full((10, 8, 8), np.nan)), ["x_test", "NaN"]),
        (
            _mutate("x_train", np.where(np.eye(8, dtype=bool), np.inf, 0.5)[None].repeat(20, 0)),
            ["x_train", "inf"],
        ),
        (_mutate("y_train", np.arange(20) % 3 + 0.5), ["y_train", "not an integer"]),
        (_mutate("y_train", np.arange(20) % 3 - 1), ["y_train", "negative"]),
        (_mutate("y_test", np.arange(10) % 3 + 5), ["y_test", "label 7", "0..2"]),
        (_mutate("y_train", np.zeros(20, dtype=int)), ["y_train", "one class"]),
        (_mutate("x_test", np.zeros((0, 8, 8))), ["test", "empty"]),
        (_mutate("x_test", np.zeros((10, 7, 8))), ["x_test", "(1, 7, 8)", "(1, 8, 8)"]),
        (_mutate("x_val", np.zeros((3, 8, 8))), ["x_val", "y_val"]),
        (_mutate("x_train", np.array([["a"] * 64] * 20).reshape(20, 8, 8)), ["x_train", "dtype"]),
    ],
)
def test_npz_data_errors(tmp_path, mutate, words):
    path = _save(tmp_path, mutate(_arrays()))
    with pytest.raises(DataError) as info:
        load_dataset(path, "convnet2d")
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


def test_npz_file_problems(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(str(tmp_path / "nope.npz"), "mlp")
    with pytest.raises(DataError, match="neither a built-in"):
        load_dataset("mnist", "mlp")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(str(bad), "mlp")
    with pytest.raises(DataError, match="unknown model kind"):
        load_dataset("digits", "resnet")
