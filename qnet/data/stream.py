"""Reading a split bigger than memory: memory-mapped ``.npz`` members, batch by batch.

:func:`open_split` gives a :class:`SplitStream` over one split of a data set; for an
uncompressed ``.npz`` the samples are memory-mapped (:func:`npz_member`) and only the labels
and one batch at a time are in memory. :func:`checkpoint_stream` is the same for a
checkpoint's data, checked against its model. The values equal what
:func:`qnet.data.load_dataset` returns.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from qnet.data.datasets import (
    BUILTIN_DATASETS,
    SPLITS,
    _check_x,
    _check_y,
    carve_indices,
    checkpoint_split,
    load_dataset,
)
from qnet.errors import DataError
from qnet.models.config import MODEL_KINDS

__all__ = ["npz_member", "SplitStream", "open_split", "checkpoint_stream"]


def npz_member(path: str | Path, key: str) -> np.ndarray:
    """One array of an ``.npz``, memory-mapped (read-only) when the archive stores it
    uncompressed (``np.savez``), else read whole (``np.savez_compressed``).

    ``np.load(path, mmap_mode="r")`` memory-maps ``.npy`` files only; for an ``.npz`` it reads
    each array into memory. This maps the member's bytes inside the zip file instead, so an
    archive bigger than memory can be read in slices.
    """
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(f"{key}.npy")
            except KeyError:
                raise DataError(
                    f"{path}: no array {key!r} (found {', '.join(sorted(_npz_keys(zf)))})"
                ) from None
            stored = info.compress_type == zipfile.ZIP_STORED
            if not stored:
                with zf.open(info) as fh:
                    return np.lib.format.read_array(fh, allow_pickle=False)
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                raise DataError(f"{path}: damaged zip entry for {key!r}")
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
        if dtype.hasobject:
            raise DataError(f"{path}: {key} holds Python objects; expected numbers")
        if int(np.prod(shape)) == 0:
            return np.zeros(shape, dtype)
        with open(path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        return np.ndarray(
            shape,
            dtype,
            buffer=mm,
            offset=offset,
            order="F" if fortran else "C",  # type: ignore[call-overload]
        )
    except DataError:
        raise
    except Exception as exc:  # zipfile / numpy raise many types for a damaged file
        raise DataError(
            f"{path}: cannot read {key!r} from the .npz archive ({type(exc).__name__}: {exc})"
        ) from exc


def _npz_keys(zf: Any) -> list[str]:
    return [n[:-4] for n in zf.namelist() if n.endswith(".npy")]


@dataclass(frozen=True, eq=False)
class SplitStream:
    """One split of a data set, read in batches without loading it (see :func:`open_split`).

    Attributes
    ----------
    x : numpy.ndarray
        The raw samples (memory-mapped for an uncompressed ``.npz``), file layout.
    y : numpy.ndarray
        int64 labels.
    name, split, model_kind : str
    in_shape : tuple of int
        Per-sample shape in the model's layout.
    num_classes : int
    scale, offset : float
        Normalisation, the same as :func:`load_dataset` applies.
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    split: str
    model_kind: str
    in_shape: tuple[int, ...]
    num_classes: int
    scale: float
    offset: float

    def __len__(self) -> int:
        return len(self.y)

    def batches(
        self, size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` batches: x normalised float32 in the model's layout, exactly as
        :func:`load_dataset` returns it; NaN/inf are refused with the sample index."""
        if size < 1:
            raise DataError(f"batch size must be >= 1, got {size}")
        stop = len(self) if stop is None else min(stop, len(self))
        path, key = Path(self.name), f"x_{self.split}"
        for i in range(start, stop, size):
            raw = np.asarray(self.x[i : min(i + size, stop)])
            x = _check_x(path, key, raw, self.model_kind, first=i)
            yield ((x - self.offset) * self.scale).astype(np.float32), self.y[i : i + len(x)]
            _release(raw)


def _release(part: np.ndarray) -> None:
    """Drop the pages of a memory-mapped slice from this process' resident set once read,
    so streaming a file bigger than memory keeps the RSS bounded (the OS page cache keeps
    them if it has room)."""
    base = part.base
    while isinstance(base, np.ndarray):
        base = base.base
    if not isinstance(base, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED") or not part.size:
        return
    start = part.__array_interface__["data"][0] - _address(base)
    page = mmap.PAGESIZE
    lo = (start // page) * page
    hi = min(len(base), -(-(start + part.nbytes) // page) * page)
    if hi > lo:
        base.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def _address(mm: mmap.mmap) -> int:
    """Address of an mmap's first byte."""
    return int(np.frombuffer(mm, np.uint8).__array_interface__["data"][0])


def open_split(
    spec: str, model_kind: str, split: str = "test", seed: int = 0, *, minmax: bool = False
) -> SplitStream:
    """A :class:`SplitStream` over ``split`` of ``spec`` (a built-in data set or an ``.npz``).

    For an uncompressed ``.npz`` the samples are memory-mapped (:func:`npz_member`): only
    the labels and one batch at a time are in memory, and the normalisation's min/max of
    ``x_train`` is computed in one streaming pass. Gives the same values as
    :func:`load_dataset`.
    """
    if split not in SPLITS:
        raise DataError(f"--split {split!r} unknown; choose {', '.join(SPLITS)}")
    if model_kind not in MODEL_KINDS:
        raise DataError(
            f"unknown model kind {model_kind!r}; choose one of {', '.join(MODEL_KINDS)}"
        )
    if str(spec) in BUILTIN_DATASETS:
        data = load_dataset(str(spec), model_kind, seed=seed)
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if x is None or y is None:
            raise DataError(f"data set {data.name!r} has no {split} split")
        return SplitStream(
            x, y, data.name, split, model_kind, data.in_shape, data.num_classes, 1.0, 0.0
        )
    path = Path(spec)
    if not path.is_file():
        raise DataError(
            f"--data {spec!r} is neither a built-in data set ({', '.join(BUILTIN_DATASETS)}) "
            "nor an existing .npz file"
        )
    y_train = _check_y(path, "y_train", np.asarray(npz_member(path, "y_train")))
    x = npz_member(path, f"x_{split}")
    y = _check_y(path, f"y_{split}", np.asarray(npz_member(path, f"y_{split}")))
    if len(x) != len(y):
        raise DataError(f"{path}: x_{split} has {len(x)} samples but y_{split} has {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{path}: split {split!r} is empty (x_{split} has 0 samples)")
    num_classes = int(y_train.max()) + 1 if len(y_train) else 0
    if num_classes < 2:
        raise DataError(f"{path}: y_train holds only one class; need >= 2")
    if int(y.max()) >= num_classes:
        raise DataError(
            f"{path}: y_{split} has label {int(y.max())} but y_train's labels are "
            f"0..{num_classes - 1} (K inferred from y_train)"
        )
    x_train = npz_member(path, "x_train")
    lo, hi = np.inf, -np.inf
    step = max(1, (64 << 20) // max(1, x_train[:1].nbytes))
    for i in range(0, len(x_train), step):
        part = _check_x(path, "x_train", np.asarray(x_train[i : i + step]), model_kind, first=i)
        lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    if not hi > lo:
        raise DataError(f"{path}: x_train is constant ({lo}); nothing to learn")
    in_shape = _check_x(path, f"x_{split}", np.asarray(x[:1]), model_kind).shape[1:]
    # .npz inputs are standardised inside the model now (raw values here); only checkpoints
    # written before that expect min-max scaling to [0, 1]
    scale, offset = (1.0 / (hi - lo), lo) if minmax else (1.0, 0.0)
    return SplitStream(
        x, y, str(path), split, model_kind, tuple(int(v) for v in in_shape), num_classes,
        scale, offset,
    )  # fmt: skip


class _Rows:
    """Rows ``idx`` of a (memory-mapped) array, read slice by slice as :class:`SplitStream`
    reads them."""

    def __init__(self, base: Any, idx: np.ndarray) -> None:
        self.base, self.idx = base, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, item: slice) -> np.ndarray:
        return np.asarray(self.base[self.idx[item]])


def _has_member(path: str | Path, name: str) -> bool:
    with np.load(path, allow_pickle=False) as z:
        return name in z.files


def checkpoint_stream(
    ckpt: Any, data: str | None = None, split: str = "test", seed: int | None = None
) -> SplitStream:
    """Like :func:`checkpoint_split`, as a :class:`SplitStream` (an ``.npz`` is memory-mapped,
    not loaded), checked against the model: per-sample shape and label range.

    A built-in data set is split as at training time: the checkpoint's split seed (``seed``
    overrides it) and validation fraction."""
    spec = data or ckpt.data_spec
    if not spec:
        raise DataError(f"{ckpt.path}: records no data set; pass --data")
    if str(spec) in BUILTIN_DATASETS:
        ds, x, y = checkpoint_split(ckpt, str(spec), split, seed)
        return SplitStream(
            x, y, ds.name, split, ckpt.config.kind, ds.in_shape, ds.num_classes, 1.0, 0.0
        )
    norm = dict(getattr(ckpt, "normalisation", {}) or {})
    if seed is None:
        seed = int(norm.get("split_seed", 0))
    method = norm.get("method")
    fraction = float(norm.get("val_fraction") or 0.0)
    carved = split in ("train", "val") and fraction > 0 and not _has_member(spec, "x_val")
    source = "train" if carved else split
    stream = open_split(spec, ckpt.config.kind, source, seed, minmax=method in (None, "minmax"))
    if carved:
        # training carved its validation part out of x_train: the same rows, as training saw
        idx_train, idx_val = carve_indices(str(spec), stream.y, fraction, seed)
        idx = idx_val if split == "val" else idx_train
        rows: Any = _Rows(stream.x, idx)  # reads like the array it stands for
        stream = replace(stream, x=rows, y=stream.y[idx], split=split)
    if tuple(stream.in_shape) != tuple(ckpt.config.in_shape):
        raise DataError(
            f"--data {spec}: samples have shape {tuple(stream.in_shape)} but the "
            f"{ckpt.config.kind} model in {ckpt.path} takes {tuple(ckpt.config.in_shape)}"
        )
    if len(stream.y) and int(stream.y.max()) >= ckpt.config.num_classes:
        raise DataError(
            f"--data {spec}: {split} labels go up to {int(stream.y.max())} but the model has "
            f"{ckpt.config.num_classes} classes"
        )
    return stream
