"""Loading a data set for a model: built-in digits and user ``.npz`` files, in memory.

``load_dataset(spec, model_kind, seed)`` returns a :class:`Dataset` whose arrays are exactly what
the model receives (float32) laid out for the model kind, with a validation split carved from
the training data (``val_fraction``) and the input preprocessing fitted on what is left of the
training split:

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
``convnet1d`` (N, C=8 columns, L=8 rows); ``digits-seq`` is each image as one 64-step sequence
of single pixels (lstm (N, 64, 1), convnet1d (N, 1, 64)). The train/test split is stratified
and fixed by the seed.

Preprocessing. ``.npz`` inputs are standardised by default, inside the model: the arrays stay
raw, and the model's forward computes ``(x - mean) / std`` with the training split's per
channel (convnets) / per feature (lstm, mlp) statistics, stored as buffers in the model (so
evaluate, simulate, verify and export apply it identically), before a signed input quantiser
whose power-of-two range covers the 99.9th percentile of the standardised training data.
Outliers beyond it saturate. Digits keep pixel / 16 in [0, 1] with an unsigned quantiser
(``x_model = (x_raw - offset) * scale``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qnet.errors import DataError
from qnet.models.config import MODEL_KINDS

__all__ = [
    "Dataset",
    "load_dataset",
    "checkpoint_split",
    "BUILTIN_DATASETS",
    "SPLITS",
    "TEST_FRACTION",
    "DEFAULT_VAL_FRACTION",
    "INPUT_NORMS",
    "INPUT_RANGE_PERCENTILE",
]

BUILTIN_DATASETS = ("digits", "digits-rows", "digits-seq")
#: Default fraction of the training data held out for validation.
DEFAULT_VAL_FRACTION = 0.1
INPUT_NORMS = ("auto", "standardize", "minmax", "none")
#: The input quantiser of standardised data covers this percentile of |x| (power of two up).
INPUT_RANGE_PERCENTILE = 99.9
#: Fraction of the built-in data held out as the test split.
TEST_FRACTION = 0.2
_REQUIRED = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Model-layout arrays of one data set, with the input preprocessing the model needs.

    Attributes
    ----------
    x_train, y_train, x_val, y_val, x_test, y_test : numpy.ndarray
        float32 inputs (N, *in_shape) and int64 labels (N,). ``x_val``/``y_val`` may be None.
        The inputs are what the model receives: with ``input_norm == "standardize"`` they are
        the raw values and the model standardises them itself (``mean``/``std``).
    num_classes : int
        K; labels are 0..K-1.
    in_shape : tuple of int
        Per-sample input shape the model expects.
    name : str
        ``digits``, ``digits-rows``, ``digits-seq`` or the ``.npz`` path.
    model_kind : str
        Layout the arrays were prepared for.
    scale, offset : float
        A data-level normalisation already applied to the arrays: ``x = (raw - offset) *
        scale`` (digits: pixel / 16; ``minmax``: to [0, 1]; otherwise 1 and 0).
    image_hw : tuple of int or None
        (H, W) when the samples are images that may be augmented by pixel shifts.
    input_norm : str
        ``standardize`` (the model applies ``(x - mean) / std``), ``minmax`` or ``none``.
    mean, std : numpy.ndarray or None
        float32 training-split statistics (per channel / feature, broadcastable against
        ``(N, *in_shape)``) when ``input_norm == "standardize"``.
    input_signed : bool
        Whether the model's input quantiser should be signed (standardised data).
    input_range : float
        Power of two the input quantiser should cover: ``[-r, r)`` signed, ``[0, r)`` unsigned.
    val_fraction : float or None
        Fraction of the training data carved out as ``x_val`` (None: the file gave its own).
    split_seed : int
        Seed of the train/val (and built-in train/test) splits.
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
    input_norm: str = "none"
    mean: np.ndarray | None = field(default=None)
    std: np.ndarray | None = field(default=None)
    input_signed: bool = False
    input_range: float = 1.0
    val_fraction: float | None = 0.0
    split_seed: int = 0

    @property
    def normalisation(self) -> dict[str, Any]:
        """The input preprocessing and splits as plain data (stored in checkpoints)."""
        out: dict[str, Any] = {
            "method": self.input_norm,
            "scale": float(self.scale),
            "offset": float(self.offset),
            "formula": "(x - offset) * scale",
            "val_fraction": self.val_fraction,
            "split_seed": int(self.split_seed),
            "input_signed": bool(self.input_signed),
            "input_range": float(self.input_range),
        }
        if self.mean is not None and self.std is not None:
            out["formula"] = "(x - mean) / std inside the model"
            out["mean"] = self.mean.reshape(-1).tolist()
            out["std"] = self.std.reshape(-1).tolist()
        return out

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Apply this data set's data-level normalisation (scale/offset) to raw values
        (float32). Standardisation is not included: the model applies it."""
        return ((np.asarray(raw, dtype=np.float64) - self.offset) * self.scale).astype(np.float32)


def load_dataset(
    spec: str,
    model_kind: str,
    seed: int = 0,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    input_norm: str = "auto",
    in_shape: tuple[int, ...] | None = None,
) -> Dataset:
    """Load ``digits``, ``digits-rows``, ``digits-seq`` or an ``.npz`` file for a model kind.

    Parameters
    ----------
    spec : str
        A built-in data set or a path to an ``.npz`` with ``x_train, y_train, x_test,
        y_test`` (optional ``x_val, y_val``).
    model_kind : str
        ``convnet2d``, ``convnet1d``, ``lstm`` or ``mlp``: decides the layout.
    seed : int
        Seed of the stratified train/test split of the built-in data and of the validation
        split carved from the training data.
    val_fraction : float
        Fraction of the training data held out as the validation split, in [0, 1) (ignored
        when the ``.npz`` gives its own ``x_val``/``y_val``).
    input_norm : {'auto', 'standardize', 'minmax', 'none'}
        ``standardize``: the model standardises its input with training-split statistics
        (per channel/feature) and gets a signed input quantiser whose power-of-two range covers
        the 99.9th percentile of the standardised training data; ``minmax``: the arrays are
        scaled to [0, 1] by the training split's min and max (unsigned quantiser, range 1);
        ``none``: as loaded. ``auto``: ``standardize`` for ``.npz`` files, ``none`` for the
        built-in digits (already pixel / 16 in [0, 1]); a user's own model (kind ``user``)
        gets ``none``: its input quantiser expects the data as they are.
    in_shape : tuple of int, optional
        For ``model_kind="user"`` (a user's own model): the per-sample shape its example input
        has; samples of the same size are reshaped to it.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Unknown spec, unreadable file, missing keys, wrong ranks, mismatched lengths, NaN/inf,
        non-integer or out-of-range labels, empty splits, bad ``val_fraction``/``input_norm``.
    """
    if model_kind not in (*MODEL_KINDS, "user"):
        raise DataError(
            f"unknown model kind {model_kind!r}; choose one of {', '.join(MODEL_KINDS)}"
        )
    if model_kind == "user" and in_shape is None:
        raise DataError("a user model's data need its input shape (in_shape)")
    if input_norm not in INPUT_NORMS:
        raise DataError(
            f"input normalisation {input_norm!r} unknown; choose {', '.join(INPUT_NORMS)}"
        )
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, int | float)
        or not 0.0 <= float(val_fraction) < 1.0
    ):
        raise DataError(f"--val-fraction must be in [0, 1), got {val_fraction!r}")
    spec = str(spec)
    if spec in BUILTIN_DATASETS:
        raw = _load_digits(spec, "mlp" if model_kind == "user" else model_kind, seed)
        method = "none" if input_norm == "auto" else input_norm
    else:
        path = Path(spec)
        if path.suffix != ".npz" and not path.exists():
            raise DataError(
                f"--data {spec!r} is neither a built-in data set ({', '.join(BUILTIN_DATASETS)}) "
                "nor an existing .npz file"
            )
        raw = _load_npz(path, model_kind)
        method = "standardize" if input_norm == "auto" else input_norm
    if model_kind == "user":
        assert in_shape is not None
        method = "none" if input_norm == "auto" else input_norm
        raw.xs = {k: _reshape_user(raw.name, k, v, in_shape) for k, v in raw.xs.items()}
        raw.image_hw = None
    return _prepare(raw, model_kind, seed, float(val_fraction), method)


def _reshape_user(name: str, split: str, x: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(in_shape))
    if int(np.prod(x.shape[1:])) != size:
        raise DataError(
            f"{name}: x_{split} samples have shape {tuple(x.shape[1:])} "
            f"({int(np.prod(x.shape[1:]))} values) but the model's example input has shape "
            f"{tuple(in_shape)} ({size} values)"
        )
    return x.reshape(len(x), *in_shape)


@dataclass
class _Raw:
    xs: dict[str, np.ndarray]
    ys: dict[str, np.ndarray]
    num_classes: int
    name: str
    scale: float = 1.0
    offset: float = 0.0
    image_hw: tuple[int, int] | None = None


def _prepare(raw: _Raw, model_kind: str, seed: int, val_fraction: float, method: str) -> Dataset:
    """Carve the validation split, then fit the input preprocessing on what is left."""
    xs, ys = dict(raw.xs), dict(raw.ys)
    carved: float | None = None if "val" in xs else val_fraction
    if "val" not in xs and val_fraction > 0:
        xs["train"], xs["val"], ys["train"], ys["val"] = _carve(
            raw.name, xs["train"], ys["train"], val_fraction, seed
        )
    x_train = xs["train"]
    scale, offset = raw.scale, raw.offset
    mean = std = None
    signed, limit = False, 1.0
    if method == "minmax":
        lo, hi = float(x_train.min()), float(x_train.max())
        if hi <= lo:
            raise DataError(f"{raw.name}: x_train is constant ({lo}); nothing to learn")
        # compose with a data-level scale already applied (digits: pixel / 16)
        offset = raw.offset + lo / raw.scale
        scale = raw.scale / (hi - lo)
        xs = {k: ((v - lo) / (hi - lo)) for k, v in xs.items()}
    elif method == "standardize":
        shape = _stats_shape(model_kind, x_train.shape[1:])
        axes = tuple(i for i, n in enumerate((len(x_train), *shape)) if n == 1 or i == 0)
        mean64 = x_train.mean(axis=axes, keepdims=True)[0]
        std64 = x_train.std(axis=axes, keepdims=True)[0]
        std64 = np.where(std64 > 0, std64, 1.0)
        mean = mean64.astype(np.float32)
        std = std64.astype(np.float32)
        # the range the model's quantiser sees: standardised exactly as the model does it
        z = (x_train.astype(np.float32) - mean) / std
        signed, limit = True, _pow2_range(float(np.percentile(np.abs(z), INPUT_RANGE_PERCENTILE)))
        if model_kind == "lstm":
            # QuantLSTM requantises its input with io_quant, which it shares with the hidden
            # state h in (-1, 1): scale the standardised input into the same [-1, 1) range
            # (a power of two, so the input quantiser's grid is unchanged relative to it).
            std = (std64 * limit).astype(np.float32)
            limit = 1.0
    elif float(x_train.min()) < 0:
        signed, limit = True, _pow2_range(float(np.abs(x_train).max()))
    else:
        limit = _pow2_range(float(x_train.max()), unsigned=True)

    def f32(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.ascontiguousarray(x, dtype=np.float32)

    x_tr = f32(xs["train"])
    assert x_tr is not None
    return Dataset(
        x_train=x_tr,
        y_train=ys["train"],
        x_val=f32(xs.get("val")),
        y_val=ys.get("val"),
        x_test=f32(xs["test"]),  # type: ignore[arg-type]
        y_test=ys["test"],
        num_classes=raw.num_classes,
        in_shape=tuple(int(v) for v in x_tr.shape[1:]),
        name=raw.name,
        model_kind=model_kind,
        scale=scale,
        offset=offset,
        image_hw=raw.image_hw,
        input_norm=method,
        mean=mean,
        std=std,
        input_signed=signed,
        input_range=limit,
        val_fraction=carved,
        split_seed=int(seed),
    )


def _stats_shape(model_kind: str, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Per channel (convnets) or per feature (lstm, mlp); same rule as the models' buffers."""
    shape = [1] * len(in_shape)
    axis = len(shape) - 1 if model_kind == "lstm" else 0
    shape[axis] = in_shape[axis]
    return tuple(shape)


def _pow2_range(value: float, unsigned: bool = False) -> float:
    """Smallest power of two >= ``value`` (at least 1 for signed data, 2**-8 unsigned)."""
    floor = 2.0**-8 if unsigned else 1.0
    if not value > floor:
        return floor
    return float(2.0 ** math.ceil(math.log2(value)))


def _carve(
    name: str, x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split ``fraction`` of (x, y) off as validation data, stratified when every class has
    at least two samples."""
    idx_train, idx_val = carve_indices(name, y, fraction, seed)
    return x[idx_train], x[idx_val], y[idx_train], y[idx_val]


def carve_indices(
    name: str, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (training, validation) indices of the validation split carved from ``y``
    (the labels of ``x_train``); what training used for ``--val-fraction``."""
    n = len(y)
    n_val = int(round(n * fraction))
    if n_val < 1 or n - n_val < 1:
        raise DataError(
            f"{name}: --val-fraction {fraction} of {n} training samples leaves "
            f"{n_val} for validation and {n - n_val} for training; each needs at least one "
            "(use --val-fraction 0 for no validation split)"
        )
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and n_val >= len(counts[counts > 0]) else None
    idx_train, idx_val = train_test_split(
        np.arange(n), test_size=n_val, random_state=seed + 1, stratify=stratify
    )
    idx_train.sort()
    idx_val.sort()
    return idx_train, idx_val


def _load_digits(spec: str, model_kind: str, seed: int) -> _Raw:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float64)  # (N, 8, 8), values 0..16
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, random_state=seed, stratify=labels
    )
    scale = 1.0 / 16.0
    seq = spec == "digits-seq"
    return _Raw(
        xs={
            "train": _layout_images(images[idx_train] * scale, model_kind, seq),
            "test": _layout_images(images[idx_test] * scale, model_kind, seq),
        },
        ys={"train": labels[idx_train], "test": labels[idx_test]},
        num_classes=10,
        name=spec,
        scale=scale,
        offset=0.0,
        image_hw=(8, 8) if model_kind == "convnet2d" and not seq else None,
    )


def _layout_images(images: np.ndarray, model_kind: str, seq: bool = False) -> np.ndarray:
    """(N, H, W) images -> the model kind's layout, float64.

    ``seq``: the image as one 64-step sequence of single pixels (row by row).
    """
    n = len(images)
    if seq:
        flat = images.reshape(n, -1)
        if model_kind == "convnet2d":
            raise DataError("digits-seq is a 1-D sequence; use convnet1d, lstm or mlp")
        out = {"convnet1d": flat[:, None, :], "lstm": flat[:, :, None], "mlp": flat}[model_kind]
    elif model_kind == "convnet2d":
        out = images[:, None, :, :]
    elif model_kind == "convnet1d":
        out = images.transpose(0, 2, 1)  # channels = columns, length = rows (time)
    elif model_kind == "lstm":
        out = images  # time = rows, features = columns
    else:
        out = images.reshape(n, -1)
    return np.ascontiguousarray(out, dtype=np.float64)


def _load_npz(path: Path, model_kind: str) -> _Raw:
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
    return _Raw(
        xs=xs,
        ys=ys,
        num_classes=num_classes,
        name=str(path),
        image_hw=tuple(int(v) for v in shape[1:]) if model_kind == "convnet2d" else None,  # type: ignore[arg-type]
    )


_RANKS = {
    "convnet2d": ((3, 4), "(N, H, W) or (N, C, H, W)"),
    "convnet1d": ((2, 3), "(N, L) or (N, C, L)"),
    "lstm": ((2, 3), "(N, T) or (N, T, F)"),
    "mlp": ((2, 3, 4, 5), "(N, F) (higher ranks are flattened)"),
    "user": ((2, 3, 4, 5), "(N, ...) with the size of the model's example input"),
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
    ckpt: Any, data: str | None = None, split: str = "test", seed: int | None = None
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The ``split`` of ``data`` (default: the checkpoint's own data set) for a checkpoint's
    model, checked against the model: per-sample shape and label range.

    The data are prepared as at training time (the checkpoint records the preprocessing
    method, the validation fraction and the split seed; ``seed`` overrides the latter).
    Returns ``(dataset, x, y)``; raises :class:`DataError` naming the data, split or value.
    """
    spec = data or ckpt.data_spec
    if not spec:
        raise DataError(f"{ckpt.path}: records no data set; pass --data")
    if split not in SPLITS:
        raise DataError(f"--split {split!r} unknown; choose {', '.join(SPLITS)}")
    norm = dict(getattr(ckpt, "normalisation", {}) or {})
    method = norm.get("method")
    if method is None:  # written before qnet standardised .npz data: min-max to [0, 1]
        method = "none" if str(spec) in BUILTIN_DATASETS else "minmax"
    val_fraction = norm.get("val_fraction") or 0.0
    if seed is None:
        seed = int(norm.get("split_seed", 0))
    dataset = load_dataset(
        spec,
        ckpt.config.kind,
        seed=seed,
        val_fraction=float(val_fraction),
        input_norm=str(method),
        in_shape=tuple(ckpt.config.in_shape),
    )
    x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
    if x is None or y is None:
        raise DataError(
            f"data set {dataset.name!r} has no {split} split (the model was trained with "
            f"--val-fraction {val_fraction})"
        )
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
