"""The bit-accurate simulator: what the hardware computes, bit for bit, in NumPy.

Tensors are integer mantissas of their producer's ``out_type`` (batch first). Each layer kind
has one simulation function in :data:`SIMULATORS` (explicit registry). A simulation function
receives and returns int64 mantissas, except the built-in kinds listed in
:data:`COMPACT_KINDS`: they accept mantissas in any integer dtype and return them in the
smallest integer dtype that holds their ``out_type`` (``int8`` for a 4-bit activation), which
keeps the memory traffic of the simulator small. The driver converts to int64 for the others.

Exactness. Integer arithmetic throughout, on integer mantissas. Matrix products (dense,
im2col convolution) and the requantisation after them use float32 / float64 only when it is
provably exact: every partial sum is an integer whose magnitude is at most
``bound = max|x| * max_row sum|w| + max|b|``; when ``bound < 2**53`` every partial sum, in any
summation order, is an exactly representable float64 integer, so the float64 result is the
exact integer (likewise float32 below ``2**24``). ``max|x|`` is the largest mantissa magnitude of
the input's ``FixedType`` (no data reduction is needed); only when that static bound is too
large is the bound of the actual data used. Otherwise the product is computed in int64 (exact
while ``bound < 2**63``; past that :class:`~qnet.errors.FormatError`).

Requantisation in float (:func:`_float_requant`) is exact for the same reason: the values are
integers below the float's exact limit; scaling by a power of two only changes the exponent;
``floor``, ``ceil``, ``trunc``, ``rint`` and ``clip`` of an exactly represented value are exact;
and ``w + 1/2`` (the round-to-nearest modes) is exact because the integer bound plus
``2**(shift - 1)`` stays below the limit (checked before the float path is taken).

Accumulators. The hardware accumulates ``x * w`` products and the bias in ``acc_type`` and
then casts to ``out_type``. The simulator computes the exact sum and casts it to ``acc_type``,
then to ``out_type``. That is the hardware's result whenever the products are exact in
``acc_type`` (its ``frac`` is at least input ``frac`` + weight ``frac``) and the accumulator
either cannot overflow (qnet sizes it so) or wraps (two's complement wrapping is the same after
every addition or once at the end).

Memory. :func:`simulate` runs the batch in chunks sized from a memory budget
(:data:`DEFAULT_MEMORY_BUDGET`, or ``memory_budget=``), so the working memory beyond the input
and the output is bounded by the budget whatever the batch size; the input may be a
memory-mapped array. :func:`simulate_iter` streams an iterable of batches.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from qnet.errors import DataError, FormatError, InternalError
from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import (
    Add,
    AvgPool,
    Concat,
    Conv,
    Dense,
    Flatten,
    HwGraph,
    Input,
    MaxPool,
    MultiThreshold,
    Quant,
    ReLU,
)

__all__ = [
    "simulate",
    "simulate_int",
    "simulate_iter",
    "chunk_size",
    "SIMULATORS",
    "COMPACT_KINDS",
    "register_simulator",
    "matmul_exact",
    "FLOAT_EXACT_LIMIT",
    "DEFAULT_MEMORY_BUDGET",
]

#: Largest integer magnitude below which float64 sums of integers are exact.
FLOAT_EXACT_LIMIT = 2**53
#: Same for float32 (24-bit significand).
FLOAT32_EXACT_LIMIT = 2**24
_INT_LIMIT = 2**62
#: Default working memory of one chunk of the batch, in bytes (see :func:`chunk_size`).
DEFAULT_MEMORY_BUDGET = 48 * 2**20

#: BLAS threads while simulating. One: on these shared 2-core machines OpenBLAS' second,
#: spinning thread made the simulator up to 3x slower under load, and the batch is chunked
#: so that each product is small anyway. ``None`` leaves the BLAS library's own setting.
BLAS_THREADS: int | None = 1
_CONTROLLER: list[Any] = []

#: Signature: (layer, graph, input mantissas, input types) -> output mantissas
SimFn = Callable[[Any, HwGraph, list[np.ndarray], list[FixedType]], np.ndarray]
SIMULATORS: dict[str, SimFn] = {}
#: Layer kinds whose simulation function takes and returns compact integer dtypes.
COMPACT_KINDS: set[str] = set()


def register_simulator(kind: str, compact: bool = False) -> Callable[[SimFn], SimFn]:
    """Decorator: register the simulation function of a layer kind (duplicates refused).

    With ``compact=True`` the function accepts input mantissas in any integer dtype and
    returns its output in any integer dtype that holds it; otherwise it gets and returns int64.
    """

    def deco(fn: SimFn) -> SimFn:
        if kind in SIMULATORS:
            raise ValueError(f"a simulator for layer kind {kind!r} is already registered")
        SIMULATORS[kind] = fn
        if compact:
            COMPACT_KINDS.add(kind)
        return fn

    return deco


# ------------------------------------------------------------------------------ helpers
def _abs_max(a: np.ndarray) -> int:
    if not a.size:
        return 0
    return max(abs(int(a.min())), abs(int(a.max())))


def _type_absmax(t: FixedType) -> int:
    """Largest mantissa magnitude of ``t``: a static bound on any tensor of that type."""
    return max(-t.int_min, t.int_max)


def _exact_dtype(bound: int) -> type[np.generic]:
    """Cheapest dtype in which integer sums bounded by ``bound`` are exact (see module doc)."""
    if bound < FLOAT32_EXACT_LIMIT:  # float32 integers are exact below 2**24: faster BLAS
        return np.float32
    if bound < FLOAT_EXACT_LIMIT:
        return np.float64
    if bound < _INT_LIMIT:
        return np.int64
    raise FormatError(
        f"accumulator bound {bound} exceeds int64; the layer is too wide to simulate exactly"
    )


_COMPACT_DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32)


def compact_dtype(t: FixedType) -> np.dtype[Any]:
    """The smallest NumPy integer dtype holding every mantissa of ``t``."""
    for dt in _COMPACT_DTYPES:
        info = np.iinfo(dt)
        if info.min <= t.int_min and t.int_max <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def _bound(x_absmax: int, w_t: np.ndarray) -> int:
    return x_absmax * (int(np.abs(w_t).sum(axis=0).max()) if w_t.size else 0)


def matmul_exact(x: np.ndarray, w_t: np.ndarray, x_absmax: int | None = None) -> np.ndarray:
    """Exact ``x @ w_t`` for integer ``x`` (..., K) and ``w_t`` (K, M), as int64; float BLAS
    whenever the accumulator bound proves it exact."""
    x_absmax = _abs_max(x) if x_absmax is None else x_absmax
    dtype = _exact_dtype(_bound(x_absmax, w_t))
    return (x.astype(dtype, copy=False) @ w_t.astype(dtype)).astype(np.int64)


def _shift_left(m: np.ndarray, shift: int, what: str) -> np.ndarray:
    if shift < 0:
        raise InternalError(f"negative alignment shift for {what}")
    if shift and m.size and _abs_max(m).bit_length() + shift > 62:
        raise FormatError(f"{what}: aligning by {shift} bits overflows int64")
    return m << np.int64(shift) if shift else m


def _round_inplace(w: np.ndarray, mode: Rounding) -> None:
    """Round float ``w`` in place to integers by ``mode`` (exact; see :func:`_float_requant`)."""
    if mode is Rounding.TRN:
        np.floor(w, out=w)
    elif mode is Rounding.RND_CONV:
        np.rint(w, out=w)  # IEEE round half to even
    elif mode is Rounding.TRN_ZERO:
        np.trunc(w, out=w)
    elif mode is Rounding.RND:
        w += 0.5
        np.floor(w, out=w)
    elif mode is Rounding.RND_MIN_INF:
        w -= 0.5
        np.ceil(w, out=w)
    else:
        mag = np.abs(w)
        if mode is Rounding.RND_INF:
            mag += 0.5
            np.floor(mag, out=mag)
        else:  # RND_ZERO
            mag -= 0.5
            np.ceil(mag, out=mag)
        np.copysign(mag, w, out=w)


def _float_requant(
    w: np.ndarray, frac: int, lo: int, hi: int, t: FixedType
) -> tuple[np.ndarray, int, int] | None:
    """Cast exact integers ``w * 2**-frac`` (float32/float64, every value in ``[lo, hi]``) to
    mantissas of ``t``, in place, in float. Returns ``(w, new_lo, new_hi)`` or None when the
    float arithmetic would not be provably exact (then use ``t.quantize_int``).

    Exact because every value stays an integer (in units of the current lsb) below the
    float's exact limit: the scaling is by a power of two, the rounding functions and the
    clip of exact values are exact, and ``|w| + 1/2`` is representable since
    ``max(|lo|, |hi|) + 2**(shift - 1) < limit``.
    """
    limit = FLOAT32_EXACT_LIMIT if w.dtype == np.float32 else FLOAT_EXACT_LIMIT
    shift = frac - t.frac
    # Bounds first: nothing is written unless the whole cast is exact in float.
    if shift > 0:
        if shift >= 60 or max(-lo, hi) + (1 << shift) >= limit:
            return None
        rlo, rhi = lo >> shift, -((-hi) >> shift)
    else:
        rlo, rhi = lo << -shift, hi << -shift
        if max(-rlo, rhi) >= limit:
            return None
    tlo, thi = t.int_min, t.int_max
    slo = -thi if (t.overflow is Overflow.SAT_SYM and t.signed) else tlo
    overflow = rlo < tlo or rhi > thi
    if t.overflow is Overflow.WRAP and overflow:
        return None
    if shift > 0:
        np.multiply(w, w.dtype.type(2.0**-shift), out=w)
        _round_inplace(w, t.rounding)
    elif shift < 0:
        np.multiply(w, w.dtype.type(2.0**-shift), out=w)
    if t.overflow is Overflow.SAT_ZERO:
        if overflow:
            w[(w < tlo) | (w > thi)] = 0
            rlo, rhi = min(max(rlo, tlo), 0), max(min(rhi, thi), 0)
    elif t.overflow is not Overflow.WRAP and (rlo < slo or rhi > thi):  # SAT, SAT_SYM
        np.clip(w, slo, thi, out=w)
        rlo, rhi = max(rlo, slo), min(rhi, thi)
    return w, rlo, rhi


def _requant(x: np.ndarray, frac: int, lo: int, hi: int, t: FixedType) -> np.ndarray:
    """Cast exact integer mantissas ``x * 2**-frac`` (any integer dtype, values in
    ``[lo, hi]``; or a float array of exact integers, which may be overwritten) to ``t``.
    Returns mantissas of ``t`` in :func:`compact_dtype` ``(t)``."""
    out_dt = compact_dtype(t)
    shift = frac - t.frac
    if shift == 0 and t.int_min <= lo and hi <= t.int_max:
        sym = t.overflow is Overflow.SAT_SYM and t.signed
        if not sym or lo >= -t.int_max:
            return x.astype(out_dt, copy=False)
    if x.dtype.kind == "f":
        w = x
    else:
        mag = max(-lo, hi) << max(-shift, 0)
        need = mag + (1 << shift) if 0 < shift < 60 else mag
        if shift >= 60 or need >= FLOAT_EXACT_LIMIT:
            return t.quantize_int(x.astype(np.int64), frac).astype(out_dt)
        w = x.astype(np.float32 if need < FLOAT32_EXACT_LIMIT else np.float64)
    done = _float_requant(w, frac, lo, hi, t)
    if done is None:
        return t.quantize_int(x.astype(np.int64), frac).astype(out_dt)
    return done[0].astype(out_dt)


def _accumulate(
    layer: Dense | Conv, products: np.ndarray, prod_frac: int, channel_axis: int
) -> np.ndarray:
    """int64 path: add the bias, cast to acc_type, then to out_type (see module docstring)."""
    acc_type = layer.acc_type
    _check_acc_frac(layer, prod_frac)
    total, frac = products, prod_frac
    if layer.bias is not None:
        assert layer.bias_type is not None
        bias_frac = layer.bias_type.frac
        frac = max(prod_frac, bias_frac)
        total = _shift_left(total, frac - prod_frac, f"layer {layer.name!r} products")
        bias = _shift_left(layer.bias, frac - bias_frac, f"layer {layer.name!r} bias")
        shape = [1] * total.ndim
        shape[channel_axis] = bias.shape[0]
        total = total + bias.reshape(shape)
    acc = acc_type.quantize_int(total, frac)
    return layer.out_type.quantize_int(acc, acc_type.frac)


def _check_acc_frac(layer: Dense | Conv, prod_frac: int) -> None:
    acc_type = layer.acc_type
    if acc_type.frac < prod_frac:
        raise FormatError(
            f"layer {layer.name!r}: acc_type {acc_type} has {acc_type.frac} fractional bits but the "
            f"products need {prod_frac}; the accumulator would round every product"
        )


@dataclass(frozen=True)
class _Weights:
    """A dense/conv layer's weights prepared for one input type (cached per layer)."""

    frac: int  #: fractional bits of the exact sum (products and bias aligned)
    w_t: np.ndarray  #: (K, M) int64 weights shifted onto ``frac``
    bias: np.ndarray | None  #: (M,) int64 bias shifted onto ``frac``
    wsum: int  #: max over outputs of sum |w_t|
    bmax: int  #: max |bias|
    cast: dict[Any, tuple[np.ndarray, np.ndarray | None]]  #: dtype -> (w_t, bias) in it


_PREPARED: weakref.WeakKeyDictionary[Any, dict[FixedType, _Weights]] = weakref.WeakKeyDictionary()


def _prepare(layer: Dense | Conv, in_type: FixedType) -> _Weights:
    per_type = _PREPARED.setdefault(layer, {})
    if in_type in per_type:
        return per_type[in_type]
    prod_frac = in_type.frac + layer.weight_type.frac
    _check_acc_frac(layer, prod_frac)
    frac = prod_frac
    if layer.bias is not None:
        assert layer.bias_type is not None
        frac = max(prod_frac, layer.bias_type.frac)
    w_t = layer.weight.reshape(layer.weight.shape[0], -1).T
    w_t = _shift_left(np.ascontiguousarray(w_t), frac - prod_frac, f"layer {layer.name!r} weights")
    bias = None
    if layer.bias is not None:
        assert layer.bias_type is not None
        bias = _shift_left(layer.bias, frac - layer.bias_type.frac, f"layer {layer.name!r} bias")
    wsum = int(np.abs(w_t).sum(axis=0).max()) if w_t.size else 0
    bmax = _abs_max(bias) if bias is not None else 0
    prepared = _Weights(frac, w_t, bias, wsum, bmax, {})
    per_type[in_type] = prepared
    return prepared


def _cast_weights(p: _Weights, dtype: Any) -> tuple[np.ndarray, np.ndarray | None]:
    key = np.dtype(dtype)
    if key not in p.cast:
        bias = p.bias.astype(dtype) if p.bias is not None else None
        p.cast[key] = (np.ascontiguousarray(p.w_t.astype(dtype)), bias)
    return p.cast[key]


def _weighted_dtype(
    layer: Dense | Conv, p: _Weights, x: np.ndarray, t_in: FixedType
) -> tuple[Any, int]:
    """Exact dtype for ``x @ w + b`` from the input type's bound (the data's if needed)."""
    bound = _type_absmax(t_in) * p.wsum + p.bmax
    if bound >= FLOAT_EXACT_LIMIT:
        bound = _abs_max(x) * p.wsum + p.bmax
    return _exact_dtype(bound), bound


#: Element-wise kinds a dense/conv kernel can apply to its float accumulator (fusion).
_FUSIBLE = ("relu", "quant")


def _finish_float(
    layer: Dense | Conv,
    p: _Weights,
    acc: np.ndarray,
    bound: int,
    graph: HwGraph,
    post: tuple[Any, ...] = (),
) -> np.ndarray:
    """Float accumulator (exact integers at ``p.frac``) -> acc_type -> out_type, then the
    element-wise ``post`` layers (ReLU, Quant) in the same buffer; compact result of the last.

    Falls back to int64 (and to the post layers' own kernels) wherever the float arithmetic
    is not provably exact.
    """
    steps: list[tuple[Any, FixedType]] = [(None, layer.acc_type), (None, layer.out_type)]
    steps += [(q, q.out_type) for q in post]
    w = acc
    frac, lo, hi = p.frac, -bound, bound
    done_steps = 0
    for post_layer, t in steps:
        if post_layer is not None and post_layer.kind == "relu":
            np.maximum(w, 0, out=w)
            lo, hi = max(lo, 0), max(hi, 0)
        res = _float_requant(w, frac, lo, hi, t)
        if res is None:
            break
        w, lo, hi = res
        frac = t.frac
        done_steps += 1
    if done_steps < 2:  # acc or out cast not exact in float: the int64 reference from here
        # ``w`` holds exact integers at ``frac`` (a cast that returns None writes nothing).
        y = w.astype(np.int64)
        for _q, t in steps[done_steps:2]:
            y = t.quantize_int(y, frac)
            frac = t.frac
        done_steps = 2
    else:
        y = w.astype(compact_dtype(steps[done_steps - 1][1]))
    return _apply_post(y, steps[done_steps - 1][1], graph, post[done_steps - 2 :])


def _apply_post(y: np.ndarray, t: FixedType, graph: HwGraph, post: tuple[Any, ...]) -> np.ndarray:
    """Run element-wise layers on ``y`` (of type ``t``) with their own kernels."""
    for q in post:
        y = SIMULATORS[q.kind](q, graph, [y], [t])
        t = q.out_type
    return y


def _windows(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...]) -> np.ndarray:
    """Sliding windows over the trailing spatial dims: (N, C, *out, *kernel)."""
    dims = len(kernel)
    win = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=tuple(range(2, 2 + dims)))
    index = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)
    return win[index]


def _pool_slices(
    shape: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]
) -> Iterator[tuple[Any, ...]]:
    """For each kernel offset, the strided slice of the input that it reads (out-sized)."""
    dims = len(kernel)
    spatial = shape[len(shape) - dims :]
    out = [(s - k) // st + 1 for s, k, st in zip(spatial, kernel, stride, strict=True)]
    for offset in np.ndindex(*kernel):
        yield (Ellipsis,) + tuple(
            slice(o, o + (n - 1) * st + 1, st) for o, n, st in zip(offset, out, stride, strict=True)
        )


# ----------------------------------------------------------------------------- layers
@register_simulator("input")
def _sim_input(
    layer: Input, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    raise InternalError("the input layer is not simulated by dispatch")


@register_simulator("quant", compact=True)
def _sim_quant(
    layer: Quant, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    t = types[0]
    return _requant(xs[0], t.frac, t.int_min, t.int_max, layer.out_type)


@register_simulator("relu", compact=True)
def _sim_relu(
    layer: ReLU, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    t = types[0]
    x = xs[0]
    if t.int_min < 0:
        x = np.maximum(x, 0)
    return _requant(x, t.frac, 0, t.int_max, layer.out_type)


@register_simulator("flatten", compact=True)
def _sim_flatten(
    layer: Flatten, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x, t = xs[0], types[0]
    flat = x.reshape(x.shape[0], -1)
    return _requant(flat, t.frac, t.int_min, t.int_max, layer.out_type)


@register_simulator("dense", compact=True)
def _sim_dense(
    layer: Dense,
    graph: HwGraph,
    xs: list[np.ndarray],
    types: list[FixedType],
    post: tuple[Any, ...] = (),
) -> np.ndarray:
    x, t_in = xs[0], types[0]
    p = _prepare(layer, t_in)
    dtype, bound = _weighted_dtype(layer, p, x, t_in)
    if dtype is np.int64:
        products = matmul_exact(x.astype(np.int64), layer.weight.T)
        out = _accumulate(layer, products, t_in.frac + layer.weight_type.frac, channel_axis=1)
        return _apply_post(out, layer.out_type, graph, post)
    w_t, bias = _cast_weights(p, dtype)
    acc = x.astype(dtype) @ w_t
    if bias is not None:
        acc += bias
    return _finish_float(layer, p, acc, bound, graph, post)


@register_simulator("conv", compact=True)
def _sim_conv(
    layer: Conv,
    graph: HwGraph,
    xs: list[np.ndarray],
    types: list[FixedType],
    post: tuple[Any, ...] = (),
) -> np.ndarray:
    layer = layer.dense_equivalent()  # grouped/dilated: block-diagonal, zero taps (exact)
    x, t_in = xs[0], types[0]
    p = _prepare(layer, t_in)
    dtype, bound = _weighted_dtype(layer, p, x, t_in)
    n, c = x.shape[:2]
    m = layer.out_features
    kernel, stride, pad = layer.kernel, layer.stride, layer.padding
    spatial = tuple(s + 2 * q for s, q in zip(x.shape[2:], pad, strict=True))
    out_sp = tuple((s - k) // st + 1 for s, k, st in zip(spatial, kernel, stride, strict=True))
    # Channels first, batch second: (C, N, *padded), converted to the exact dtype on the way.
    xp = np.zeros((c, n, *spatial), dtype)
    inner = (slice(None), slice(None)) + tuple(
        slice(q, q + s) for s, q in zip(x.shape[2:], pad, strict=True)
    )
    xp[inner] = x.swapaxes(0, 1)
    # im2col as one strided copy per kernel offset: cols (C, *k, N, *out).
    cols = np.empty((c, *kernel, n, *out_sp), dtype)
    for offset, sl in zip(np.ndindex(*kernel), _pool_slices(spatial, kernel, stride), strict=True):
        cols[(slice(None), *offset)] = xp[sl]
    del xp
    cols2 = cols.reshape(-1, n * int(np.prod(out_sp)))  # (C * prod(k), N * positions)
    if dtype is np.int64:
        products = layer.weight.reshape(m, -1) @ cols2  # (M, N * positions)
        products = products.reshape(m, n, *out_sp).swapaxes(0, 1)
        out = _accumulate(layer, products, t_in.frac + layer.weight_type.frac, channel_axis=1)
        return _apply_post(out, layer.out_type, graph, post)
    w_t, bias = _cast_weights(p, dtype)
    acc = w_t.T @ cols2  # (M, N * positions)
    del cols, cols2
    if bias is not None:
        acc += bias[:, None]
    y = _finish_float(layer, p, acc, bound, graph, post)  # (M, N * positions), compact
    out = np.empty((n, m, *out_sp), y.dtype)
    out[...] = y.reshape(m, n, *out_sp).swapaxes(0, 1)
    return out


@register_simulator("maxpool", compact=True)
def _sim_maxpool(
    layer: MaxPool, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x, t = xs[0], types[0]
    out: np.ndarray | None = None
    for sl in _pool_slices(x.shape, layer.kernel, layer.stride):
        if out is None:
            out = x[sl].copy()
        else:
            np.maximum(out, x[sl], out=out)
    assert out is not None
    return _requant(out, t.frac, t.int_min, t.int_max, layer.out_type)


@register_simulator("avgpool", compact=True)
def _sim_avgpool(
    layer: AvgPool, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x, t = xs[0], types[0]
    count = int(np.prod(layer.kernel))
    total: np.ndarray | None = None
    for sl in _pool_slices(x.shape, layer.kernel, layer.stride):
        if total is None:
            total = x[sl].astype(np.int64)
        else:
            total += x[sl]
    assert total is not None
    log2n = count.bit_length() - 1
    return _requant(total, t.frac + log2n, t.int_min * count, t.int_max * count, layer.out_type)


#: Kernels that take ``post=`` (fusion) and the element-wise kernels they may absorb.
_FUSING = (_sim_dense, _sim_conv)
_FUSED_KERNELS = (_sim_relu, _sim_quant)


@register_simulator("add")
def _sim_add(
    layer: Add, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    frac = max(t.frac for t in types)
    a = _shift_left(xs[0], frac - types[0].frac, f"layer {layer.name!r} input 0")
    b = _shift_left(xs[1], frac - types[1].frac, f"layer {layer.name!r} input 1")
    return layer.out_type.quantize_int(a + b, frac)


@register_simulator("concat")
def _sim_concat(
    layer: Concat, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    t = layer.out_type
    parts = [
        x if t_in == t else t.quantize_int(x.astype(np.int64), t_in.frac)
        for x, t_in in zip(xs, types, strict=True)
    ]
    return np.concatenate(parts, axis=layer.axis + 1)


@register_simulator("multithreshold")
def _sim_multithreshold(
    layer: MultiThreshold, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x = xs[0]
    out = np.empty_like(x)
    n_thr = layer.thresholds.shape[1]
    for c in range(x.shape[1]):
        count = np.searchsorted(layer.thresholds[c], x[:, c], side="right")
        if not layer.increasing[c]:
            count = n_thr - count
        out[:, c] = layer.out_base + count
    return out


# ----------------------------------------------------------------------------- driver
def _check_input(graph: HwGraph, x: np.ndarray) -> np.ndarray:
    """``x`` as a float64 batch (N, *input shape); a single sample gets a batch axis."""
    return np.asarray(_batch(graph, x), dtype=np.float64)


def _batch(graph: HwGraph, x: Any) -> np.ndarray:
    """``x`` as a batch (N, *input shape) without copying (memory-mapped arrays stay so)."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x, dtype=np.float64)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"input has dtype {arr.dtype}; expected numbers (float or int)")
    shape = graph.input.out_shape
    if arr.shape == shape:
        arr = arr[None]
    if arr.shape[1:] != shape:
        raise DataError(
            f"input has shape {arr.shape}; the graph expects (N, {', '.join(map(str, shape))})"
        )
    return arr


def _quantize_input(t: FixedType, x: np.ndarray) -> np.ndarray:
    """``t.to_int(x)`` as compact mantissas; a float fast path when provably the same.

    For a saturating type with ``frac >= 0``, ``x * 2**frac`` is exact (an upward power-of-two
    scaling never rounds; an overflow to infinity falls back to :meth:`FixedType.to_int`),
    and clipping to the integer range before rounding equals rounding then saturating
    (every rounding mode is monotone and keeps integers). Rounding is exact for
    ``|s| < 2**(p - 2)`` (``p`` the float's significand bits), which the clip guarantees.
    """
    sat = t.overflow in (Overflow.SAT, Overflow.SAT_SYM)
    if not sat or not 0 <= t.frac <= 900 or t.width > 50 or not x.size:
        return t.to_int(x).astype(compact_dtype(t))
    use32 = x.dtype == np.float32 and t.width <= 22 and t.frac <= 100
    work = np.float32 if use32 else np.float64
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.multiply(x, work(2.0**t.frac), dtype=work)
        finite = np.isfinite(s.sum(dtype=np.float64))
    if not finite:
        return t.to_int(x).astype(compact_dtype(t))  # NaN/inf or a scaling overflow
    lo = -t.int_max if (t.overflow is Overflow.SAT_SYM and t.signed) else t.int_min
    np.clip(s, lo, t.int_max, out=s)
    _round_inplace(s, t.rounding)
    return s.astype(compact_dtype(t))


def _layer_bytes(graph: HwGraph, layer: Any) -> int:
    """Rough working bytes per sample of one layer (inputs, temporaries, output)."""
    out = int(np.prod(layer.out_shape))
    ins = sum(int(np.prod(graph[s].out_shape)) for s in layer.inputs)
    if isinstance(layer, Conv):
        k = int(np.prod(layer.weight.shape[1:]))
        pos = out // layer.out_features
        padded = int(np.prod(graph.in_shape(layer))) * 2
        return 8 * (pos * k + 2 * out + padded) + ins
    if isinstance(layer, Dense):
        return 8 * (ins + 2 * out)
    return 8 * (4 * ins + 2 * out)


def chunk_size(graph: HwGraph, memory_budget: int | None = None, trace: bool = False) -> int:
    """Samples per chunk so one chunk's working memory stays within ``memory_budget`` bytes.

    The estimate is the widest layer's temporaries (im2col columns, products, its input and
    output in their widest dtypes) plus every live tensor of the chunk.
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise DataError(f"memory_budget must be a positive number of bytes, got {budget}")
    live = sum(8 * int(np.prod(layer.out_shape)) for layer in graph.layers)
    worst = max(_layer_bytes(graph, layer) for layer in graph.layers)
    per_sample = worst + live + 16 * int(np.prod(graph.input.out_shape))
    return max(1, budget // per_sample)


def _fusion_plan(graph: HwGraph) -> dict[str, tuple[Any, ...]]:
    """Dense/conv layers -> the chain of element-wise layers (ReLU, Quant) that read only
    them and that their kernel applies to its accumulator in the same pass (no trace)."""
    consumers: dict[str, list[Any]] = {layer.name: [] for layer in graph.layers}
    for layer in graph.layers:
        for src in layer.inputs:
            consumers[src].append(layer)
    plan: dict[str, tuple[Any, ...]] = {}
    for layer in graph.layers:
        if layer.kind not in ("dense", "conv") or SIMULATORS.get(layer.kind) not in _FUSING:
            continue
        chain: list[Any] = []
        last = layer
        while (
            last is not graph.output
            and len(consumers[last.name]) == 1
            and consumers[last.name][0].kind in _FUSIBLE
            and consumers[last.name][0].inputs == (last.name,)
            and SIMULATORS.get(consumers[last.name][0].kind) in _FUSED_KERNELS
        ):
            last = consumers[last.name][0]
            chain.append(last)
        if chain:
            plan[layer.name] = tuple(chain)
    return plan


def _run_chunk(graph: HwGraph, x: np.ndarray, trace: bool) -> dict[str, np.ndarray]:
    """Mantissas (compact or int64) of one chunk: the output's, or every layer's."""
    values: dict[str, np.ndarray] = {graph.input.name: _quantize_input(graph.input.out_type, x)}
    remaining = {layer.name: 0 for layer in graph.layers}
    for layer in graph.layers:
        for src in layer.inputs:
            remaining[src] += 1
    plan = {} if trace else _fusion_plan(graph)
    skip: set[str] = set()
    for layer in graph.layers[1:]:
        if layer.name in skip:
            continue
        fn = SIMULATORS.get(layer.kind)
        if fn is None:
            raise FormatError(f"layer {layer.name!r}: no simulator for layer kind {layer.kind!r}")
        ins = [values[src] for src in layer.inputs]
        if layer.kind not in COMPACT_KINDS:
            ins = [a.astype(np.int64, copy=False) for a in ins]
        types = [graph[src].out_type for src in layer.inputs]
        chain = plan.get(layer.name, ())
        if chain:
            values[chain[-1].name] = fn(layer, graph, ins, types, post=chain)  # type: ignore[call-arg]
            skip.update(q.name for q in chain)
        else:
            values[layer.name] = fn(layer, graph, ins, types)
        if not trace:  # free what no later layer reads
            for src in layer.inputs:
                remaining[src] -= 1
                if remaining[src] == 0 and src != graph.output.name:
                    del values[src]
    if trace:
        return values
    return {graph.output.name: values[graph.output.name]}


def _blas_limit() -> contextlib.AbstractContextManager[Any]:
    """Limit the BLAS threads to :data:`BLAS_THREADS` (threadpoolctl, when installed)."""
    if BLAS_THREADS is None:
        return contextlib.nullcontext()
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # qnet.hw needs only NumPy
            _CONTROLLER.append(None)
        else:
            _CONTROLLER.append(ThreadpoolController())
    if _CONTROLLER[0] is None:
        return contextlib.nullcontext()
    return _CONTROLLER[0].limit(limits=BLAS_THREADS, user_api="blas")  # type: ignore[no-any-return]


def _chunks(
    graph: HwGraph, x: Any, trace: bool, memory_budget: int | None
) -> tuple[int, Iterator[tuple[int, int, dict[str, np.ndarray]]]]:
    arr = _batch(graph, x)
    n = arr.shape[0]
    step = chunk_size(graph, memory_budget, trace)

    def gen() -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
        for start in range(0, n, step):
            stop = min(n, start + step)
            with _blas_limit():
                values = _run_chunk(graph, np.asarray(arr[start:stop]), trace)
            yield start, stop, values

    return n, gen()


def _collect(
    graph: HwGraph, x: Any, trace: bool, memory_budget: int | None, as_float: bool
) -> dict[str, np.ndarray]:
    """Run every chunk and write each output into one preallocated array per tensor."""
    n, chunks = _chunks(graph, x, trace, memory_budget)
    names = [layer.name for layer in graph.layers] if trace else [graph.output.name]
    dtype = np.float64 if as_float else np.int64
    outs = {name: np.empty((n, *graph[name].out_shape), dtype) for name in names}
    for start, stop, values in chunks:
        for name in names:
            m = values[name]
            if as_float:
                outs[name][start:stop] = graph[name].out_type.from_int(m)
            else:
                outs[name][start:stop] = m
    return outs


def simulate_int(
    graph: HwGraph, x: np.ndarray, trace: bool = False, memory_budget: int | None = None
) -> dict[str, np.ndarray]:
    """Run the graph on float input ``x``; return int64 mantissas.

    Returns the output layer's mantissas under its name, or every layer's when ``trace``.
    The batch is processed in chunks of :func:`chunk_size` samples.
    """
    if graph.pre:  # the host preprocessing (float32), then the hardware
        x = graph.preprocess(np.asarray(x))
    return _collect(graph, x, trace, memory_budget, as_float=False)


def simulate(
    graph: HwGraph, x: np.ndarray, trace: bool = False, memory_budget: int | None = None
) -> np.ndarray | dict[str, np.ndarray]:
    """Bit-accurate simulation of ``graph`` on float input ``x`` (N, *input shape).

    The host preprocessing ``graph.pre`` (float32) comes first; ``x`` is then quantised once
    by the input ``FixedType``. Returns the output as exact float64 values (after the host
    postprocessing ``graph.post``), or with ``trace=True`` a dict of every hardware layer's
    output (float64) by layer name. ``x`` may be any array, memory-mapped ones included: it is read chunk by chunk, and the
    working memory beyond the input and the returned arrays stays within ``memory_budget``
    bytes (default :data:`DEFAULT_MEMORY_BUDGET`), whatever N is.
    """
    if graph.pre:  # the host preprocessing (float32), then the hardware
        x = graph.preprocess(np.asarray(x))
    outs = _collect(graph, x, trace, memory_budget, as_float=True)
    return outs if trace else graph.postprocess(outs[graph.output.name])


def simulate_iter(
    graph: HwGraph,
    batches: Iterable[Any],
    trace: bool = False,
    memory_budget: int | None = None,
) -> Iterator[np.ndarray | dict[str, np.ndarray]]:
    """Stream :func:`simulate` over an iterable of batches (e.g. a generator).

    Yields one result per batch, as :func:`simulate` returns it; only one batch (and its
    output) is held at a time, so an input stream of any length runs in bounded memory.
    """
    for batch in batches:
        yield simulate(graph, batch, trace=trace, memory_budget=memory_budget)


def batches_of(x: Any, size: int) -> Iterator[np.ndarray]:
    """Consecutive batches of ``size`` samples of an array (a memory-mapped one stays so)."""
    if size < 1:
        raise DataError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(x), size):
        yield x[start : start + size]
