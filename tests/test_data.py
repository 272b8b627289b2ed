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
    assert d.x_train.shape == (1437, *shape) and d.x_test.shape == (360, *shape)
    assert d.x_train.dtype == np.float32
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
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
    d = load_dataset(path, "convnet2d")
    assert d.in_shape == (1, 8, 8) and d.num_classes == 3
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    np.testing.assert_allclose(d.normalise(arrays["x_test"])[:, None], d.x_test, rtol=0, atol=1e-6)
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
