"""Datasets for training and evaluation: built-in digits and user ``.npz`` files.

``load_dataset(spec, model_kind, seed)`` returns a :class:`Dataset` whose arrays are already
normalised exactly as the model receives them (float32, in [0, 1] for the training split) and
laid out for the model kind:

=========== ============= =====================================================
kind        layout        from an ``.npz``
=========== ============= =====================================================
convnet2d   (N, C, H, W)  (N, H, W) or (N, C, H, W)
convnet1d   (N, C, L)     (N, L) or (N, C, L)
lstm        (N, T, F)     (N, T) or (N, T, F)
mlp         (N, F)        (N, F), or any rank >= 2 (flattened)
=========== ============= =====================================================

``digits`` is scikit-learn's 8x8 digit images (pixel / 16 -> [0, 1]); ``digits-rows`` is the same
images read as 8 time steps (rows) of 8 features (columns): for ``lstm`` (N, T=8, F=8), for
``convnet1d`` (N, C=8 columns, L=8 rows). The train/test split is stratified and fixed by the seed.
Normalisation: ``x_model = (x_raw - offset) * scale``.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qnet.errors import DataError
from qnet.models.config import MODEL_KINDS

__all__ = [
    "Dataset",
    "load_dataset",
    "BUILTIN_DATASETS",
    "TEST_FRACTION",
    "npz_member",
    "SplitStream",
    "open_split",
    "checkpoint_stream",
]

BUILTIN_DATASETS = ("digits", "digits-rows")
#: Fraction of the built-in data held out as the test split.
TEST_FRACTION = 0.2
_REQUIRED = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Normalised, model-layout arrays of one data set.

    Attributes
    ----------
    x_train, y_train, x_val, y_val, x_test, y_test : numpy.ndarray
        float32 inputs (N, *in_shape) and int64 labels (N,). ``x_val``/``y_val`` may be None.
    num_classes : int
        K; labels are 0..K-1.
    in_shape : tuple of int
        Per-sample input shape the model expects.
    name : str
        ``digits``, ``digits-rows`` or the ``.npz`` path.
    model_kind : str
        Layout the arrays were prepared for.
    scale, offset : float
        The normalisation applied: ``x = (raw - offset) * scale``.
    image_hw : tuple of int or None
        (H, W) when the samples are images that may be augmented by pixel shifts.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    in_shape: tuple[int, ...]
    name: str
    model_kind: str
    scale: float
    offset: float
    image_hw: tuple[int, int] | None = field(default=None)

    @property
    def normalisation(self) -> dict[str, Any]:
        """The normalisation as a plain dict: ``x = (raw - offset) * scale``."""
        return {
            "scale": float(self.scale),
            "offset": float(self.offset),
            "formula": "(x - offset) * scale",
        }

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Apply this data set's normalisation to raw values (float32)."""
        return ((np.asarray(raw, dtype=np.float64) - self.offset) * self.scale).astype(np.float32)


def load_dataset(spec: str, model_kind: str, seed: int = 0) -> Dataset:
    """Load ``digits``, ``digits-rows`` or an ``.npz`` file for a model kind.

    Parameters
    ----------
    spec : str
        ``digits``, ``digits-rows`` or a path to an ``.npz`` with ``x_train, y_train, x_test,
        y_test`` (optional ``x_val, y_val``).
    model_kind : str
        ``convnet2d``, ``convnet1d``, ``lstm`` or ``mlp``: decides the layout.
    seed : int
        Seed of the stratified train/test split of the built-in data.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Unknown spec, unreadable file, missing keys, wrong ranks, mismatched lengths, NaN/inf,
        non-integer or out-of-range labels, empty splits.
    """
    if model_kind not in MODEL_KINDS:
        raise DataError(
            f"unknown model kind {model_kind!r}; choose one of {', '.join(MODEL_KINDS)}"
        )
    spec = str(spec)
    if spec in BUILTIN_DATASETS:
        return _load_digits(spec, model_kind, seed)
    path = Path(spec)
    if path.suffix != ".npz" and not path.exists():
        raise DataError(
            f"--data {spec!r} is neither a built-in data set ({', '.join(BUILTIN_DATASETS)}) "
            "nor an existing .npz file"
        )
    return _load_npz(path, model_kind)


def _load_digits(spec: str, model_kind: str, seed: int) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float64)  # (N, 8, 8), values 0..16
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, random_state=seed, stratify=labels
    )
    scale, offset = 1.0 / 16.0, 0.0
    x_train = _layout_images(images[idx_train] * scale, model_kind)
    x_test = _layout_images(images[idx_test] * scale, model_kind)
    return Dataset(
        x_train=x_train,
        y_train=labels[idx_train],
        x_val=None,
        y_val=None,
        x_test=x_test,
        y_test=labels[idx_test],
        num_classes=10,
        in_shape=tuple(x_train.shape[1:]),
        name=spec,
        model_kind=model_kind,
        scale=scale,
        offset=offset,
        image_hw=(8, 8) if model_kind == "convnet2d" else None,
    )


def _layout_images(images: np.ndarray, model_kind: str) -> np.ndarray:
    """(N, H, W) images -> the model kind's layout, float32."""
    if model_kind == "convnet2d":
        out = images[:, None, :, :]
    elif model_kind == "convnet1d":
        out = images.transpose(0, 2, 1)  # channels = columns, length = rows (time)
    elif model_kind == "lstm":
        out = images  # time = rows, features = columns
    else:
        out = images.reshape(len(images), -1)
    return np.ascontiguousarray(out, dtype=np.float32)


def _load_npz(path: Path, model_kind: str) -> Dataset:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: np.asarray(npz[key]) for key in npz.files}
    except DataError:
        raise
    except Exception as exc:  # numpy raises many types for a damaged or foreign file
        raise DataError(
            f"{path}: cannot read as an .npz archive ({type(exc).__name__}: {exc})"
        ) from exc
    missing = [key for key in _REQUIRED if key not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing key(s) {', '.join(missing)}; an .npz needs {', '.join(_REQUIRED)} "
            f"(optional x_val, y_val); found {', '.join(sorted(arrays)) or 'no arrays'}"
        )
    if ("x_val" in arrays) != ("y_val" in arrays):
        have, lack = ("x_val", "y_val") if "x_val" in arrays else ("y_val", "x_val")
        raise DataError(f"{path}: {have} is present but {lack} is missing; give both or neither")
    splits = ["train", "test"] + (["val"] if "x_val" in arrays else [])
    xs: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    for split in splits:
        x_key, y_key = f"x_{split}", f"y_{split}"
        x = _check_x(path, x_key, arrays[x_key], model_kind)
        y = _check_y(path, y_key, arrays[y_key])
        if len(x) == 0:
            raise DataError(f"{path}: split {split!r} is empty ({x_key} has 0 samples)")
        if len(x) != len(y):
            raise DataError(f"{path}: {x_key} has {len(x)} samples but {y_key} has {len(y)} labels")
        xs[split], ys[split] = x, y
    shape = xs["train"].shape[1:]
    for split in splits[1:]:
        if xs[split].shape[1:] != shape:
            raise DataError(
                f"{path}: x_{split} samples have shape {xs[split].shape[1:]} but x_train samples "
                f"have {shape}"
            )
    num_classes = int(ys["train"].max()) + 1
    if num_classes < 2:
        raise DataError(
            f"{path}: y_train holds only one class (labels 0..{num_classes - 1}); need >= 2"
        )
    for split in splits[1:]:
        if int(ys[split].max()) >= num_classes:
            raise DataError(
                f"{path}: y_{split} has label {int(ys[split].max())} but y_train's labels are "
                f"0..{num_classes - 1} (K inferred from y_train)"
            )
    lo, hi = float(xs["train"].min()), float(xs["train"].max())
    if hi <= lo:
        raise DataError(f"{path}: x_train is constant ({lo}); nothing to learn")
    offset, scale = lo, 1.0 / (hi - lo)

    def norm(x: np.ndarray) -> np.ndarray:
        return ((x - offset) * scale).astype(np.float32)

    return Dataset(
        x_train=norm(xs["train"]),
        y_train=ys["train"],
        x_val=norm(xs["val"]) if "val" in xs else None,
        y_val=ys.get("val"),
        x_test=norm(xs["test"]),
        y_test=ys["test"],
        num_classes=num_classes,
        in_shape=tuple(int(v) for v in shape),
        name=str(path),
        model_kind=model_kind,
        scale=scale,
        offset=offset,
        image_hw=tuple(int(v) for v in shape[1:]) if model_kind == "convnet2d" else None,  # type: ignore[arg-type]
    )


_RANKS = {
    "convnet2d": ((3, 4), "(N, H, W) or (N, C, H, W)"),
    "convnet1d": ((2, 3), "(N, L) or (N, C, L)"),
    "lstm": ((2, 3), "(N, T) or (N, T, F)"),
    "mlp": ((2, 3, 4, 5), "(N, F) (higher ranks are flattened)"),
}


def _check_x(path: Path, key: str, x: np.ndarray, model_kind: str, first: int = 0) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key} has dtype {x.dtype}; expected numbers (int or float)")
    ranks, text = _RANKS[model_kind]
    if x.ndim not in ranks:
        raise DataError(
            f"{path}: {key} has shape {x.shape} (rank {x.ndim}); {model_kind} needs {text}"
        )
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        where = [int(v) for v in np.argwhere(bad)[0]]
        where[0] += first
        raise DataError(
            f"{path}: {key} holds {int(bad.sum())} NaN/inf value(s)"
            f"{' in this part' if first else ''}, first at index {tuple(where)}"
        )
    if model_kind in ("convnet2d", "convnet1d") and x.ndim == ranks[0]:
        x = x[:, None]
    elif model_kind == "lstm" and x.ndim == 2:
        x = x[:, :, None]
    elif model_kind == "mlp":
        x = x.reshape(len(x), -1)
    if any(v == 0 for v in x.shape[1:]):
        raise DataError(f"{path}: {key} has an empty sample shape {x.shape[1:]}")
    return x


def _check_y(path: Path, key: str, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{path}: {key} has shape {y.shape}; labels must be 1-D (N,)")
    if y.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key} has dtype {y.dtype}; labels must be integers 0..K-1")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{path}: {key} holds NaN/inf labels; labels must be integers 0..K-1")
        frac = y != np.round(y)
        if frac.any():
            i = int(np.argmax(frac))
            raise DataError(
                f"{path}: {key}[{i}] = {y[i]!r} is not an integer; labels must be integers 0..K-1"
            )
    if len(y) and y.min() < 0:
        i = int(np.argmin(y))
        raise DataError(
            f"{path}: {key}[{i}] = {y[i]!r} is negative; labels must be integers 0..K-1"
        )
    return y.astype(np.int64)


SPLITS = ("test", "val", "train")


def checkpoint_split(
    ckpt: Any, data: str | None = None, split: str = "test", seed: int = 0
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The ``split`` of ``data`` (default: the checkpoint's own data set) for a checkpoint's
    model, checked against the model: per-sample shape and label range.

    Returns ``(dataset, x, y)``; raises :class:`DataError` naming the data, split or value.
    """
    spec = data or ckpt.data_spec
    if not spec:
        raise DataError(f"{ckpt.path}: records no data set; pass --data")
    if split not in SPLITS:
        raise DataError(f"--split {split!r} unknown; choose {', '.join(SPLITS)}")
    dataset = load_dataset(spec, ckpt.config.kind, seed=seed)
    x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
    if x is None or y is None:
        raise DataError(f"data set {dataset.name!r} has no {split} split")
    if tuple(x.shape[1:]) != tuple(ckpt.config.in_shape):
        raise DataError(
            f"--data {spec}: samples have shape {tuple(x.shape[1:])} but the "
            f"{ckpt.config.kind} model in {ckpt.path} takes {tuple(ckpt.config.in_shape)}"
        )
    if len(y) and int(y.max()) >= ckpt.config.num_classes:
        raise DataError(
            f"--data {spec}: {split} labels go up to {int(y.max())} but the model has "
            f"{ckpt.config.num_classes} classes"
        )
    return dataset, x, y


# ------------------------------------------------------------------ streaming (.npz > memory)
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


def open_split(spec: str, model_kind: str, split: str = "test", seed: int = 0) -> SplitStream:
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
    return SplitStream(
        x, y, str(path), split, model_kind, tuple(int(v) for v in in_shape), num_classes,
        1.0 / (hi - lo), lo,
    )  # fmt: skip


def checkpoint_stream(
    ckpt: Any, data: str | None = None, split: str = "test", seed: int = 0
) -> SplitStream:
    """Like :func:`checkpoint_split`, as a :class:`SplitStream` (an ``.npz`` is memory-mapped,
    not loaded), checked against the model: per-sample shape and label range."""
    spec = data or ckpt.data_spec
    if not spec:
        raise DataError(f"{ckpt.path}: records no data set; pass --data")
    stream = open_split(spec, ckpt.config.kind, split, seed)
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
