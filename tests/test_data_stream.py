"""Streaming a data split from an ``.npz`` without loading it: memory-mapped members,
the same values as ``load_dataset``, errors that name the file, key and sample index."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest

from qnet.data import load_dataset, npz_member, open_split
from qnet.errors import DataError


def _arrays(n: int = 300) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.uniform(-3, 5, (n, 8, 8)).astype(np.float32),
        "y_train": np.arange(n) % 4,
        "x_test": rng.uniform(-4, 6, (n // 2, 8, 8)).astype(np.float32),
        "y_test": np.arange(n // 2) % 4,
    }


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("kind", ["convnet2d", "lstm", "mlp"])
def test_stream_equals_load_dataset(tmp_path: Path, compressed: bool, kind: str) -> None:
    path = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(path, **_arrays())
    member = npz_member(path, "x_test")
    base = member.base
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, mmap.mmap) != compressed  # mapped unless compressed
    want = load_dataset(str(path), kind)
    stream = open_split(str(path), kind, "test")
    assert stream.in_shape == want.in_shape and stream.num_classes == want.num_classes
    parts = list(stream.batches(37))
    assert len(parts) == -(-len(want.x_test) // 37)
    assert np.array_equal(np.concatenate([x for x, _ in parts]), want.x_test)
    assert np.array_equal(np.concatenate([y for _, y in parts]), want.y_test)


def test_stream_names_bad_sample_and_missing_key(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["x_test"][123, 2, 5] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, **arrays)
    stream = open_split(str(path), "convnet2d", "test")
    with pytest.raises(DataError, match=r"x_test.*NaN.*\(123, 2, 5\)"):
        list(stream.batches(50))
    with pytest.raises(DataError, match="no array 'x_val'"):
        npz_member(path, "x_val")
    with pytest.raises(DataError, match="--split"):
        open_split(str(path), "convnet2d", "nope")
