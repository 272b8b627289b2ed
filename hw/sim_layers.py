"""The simulation function of every built-in layer kind, and the registry :data:`SIMULATORS`.

Tensors are integer mantissas of their producer's ``out_type`` (batch first). Each layer kind
has one simulation function in :data:`SIMULATORS` (explicit registry; kinds outside
``hw/layers.py`` register theirs in their own module, e.g. :mod:`qnet.hw.lstm`). A simulation
function receives and returns int64 mantissas, except the built-in kinds listed in
:data:`COMPACT_KINDS`: they accept mantissas in any integer dtype and return them in the
smallest integer dtype that holds their ``out_type`` (``int8`` for a 4-bit activation), which
keeps the memory traffic of the simulator small. The driver (:mod:`qnet.hw.simulator`)
converts to int64 for the others.

Dense and conv kernels may absorb the element-wise layers (ReLU, Quant) that follow them
(``post=``, see :data:`FUSING`): they apply them to their accumulator in the same pass.
Their products use the exact arithmetic of :mod:`qnet.hw.sim_arith`.

Accumulators. The hardware accumulates ``x * w`` products and the bias in ``acc_type`` and
then casts to ``out_type``. The simulator computes the exact sum and casts it to ``acc_type``,
then to ``out_type``. That is the hardware's result whenever the products are exact in
``acc_type`` (its ``frac`` is at least input ``frac`` + weight ``frac``) and the accumulator
either cannot overflow (qnet sizes it so) or wraps (two's complement wrapping is the same after
every addition or once at the end).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from qnet.errors import FormatError, InternalError
from qnet.hw.fixed import FixedType
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
from qnet.hw.sim_arith import (
    FLOAT_EXACT_LIMIT,
    _abs_max,
    _exact_dtype,
    _float_requant,
    _requant,
    _shift_left,
    _type_absmax,
    compact_dtype,
    matmul_exact,
)

__all__ = [
    "SIMULATORS",
    "COMPACT_KINDS",
    "FUSIBLE",
    "FUSING",
    "FUSED_KERNELS",
    "SimFn",
    "register_simulator",
]

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
FUSIBLE = ("relu", "quant")


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
    x, t_in = xs[0], types[0]
    p = _prepare(layer, t_in)
    dtype, bound = _weighted_dtype(layer, p, x, t_in)
    n, c = x.shape[:2]
    m, g = layer.out_features, layer.groups
    kernel, stride, pad, dil = layer.kernel, layer.stride, layer.padding, layer.dilation
    spatial = tuple(s + 2 * q for s, q in zip(x.shape[2:], pad, strict=True))
    out_sp = tuple(
        (s - sp) // st + 1 for s, sp, st in zip(spatial, layer.span, stride, strict=True)
    )
    # Channels first, batch second: (C, N, *padded), converted to the exact dtype on the way.
    xp = np.zeros((c, n, *spatial), dtype)
    inner = (slice(None), slice(None)) + tuple(
        slice(q, q + s) for s, q in zip(x.shape[2:], pad, strict=True)
    )
    xp[inner] = x.swapaxes(0, 1)
    # im2col as one strided copy per kernel offset (taps ``dilation`` apart): (C, *k, N, *out).
    cols = np.empty((c, *kernel, n, *out_sp), dtype)
    for offset in np.ndindex(*kernel):
        sl: tuple[Any, ...] = (Ellipsis,) + tuple(
            slice(o * d, o * d + (no - 1) * st + 1, st)
            for o, d, no, st in zip(offset, dil, out_sp, stride, strict=True)
        )
        cols[(slice(None), *offset)] = xp[sl]
    del xp
    positions = n * int(np.prod(out_sp))
    # groups: output block i reads input block i only -> a batched matmul over the groups
    cols3 = cols.reshape(g, -1, positions)  # (G, C/G * prod(k), N * positions)
    if dtype is np.int64:
        w3 = layer.weight.reshape(g, m // g, -1)
        products = np.matmul(w3, cols3).reshape(m, n, *out_sp).swapaxes(0, 1)
        out = _accumulate(layer, products, t_in.frac + layer.weight_type.frac, channel_axis=1)
        return _apply_post(out, layer.out_type, graph, post)
    w_t, bias = _cast_weights(p, dtype)
    acc = np.matmul(w_t.T.reshape(g, m // g, -1), cols3).reshape(m, positions)
    del cols, cols3
    if bias is not None:
        acc += bias[:, None]
    y = _finish_float(layer, p, acc, bound, graph, post)  # (M, N * positions), compact
    out = np.empty((n, m, *out_sp), y.dtype)
    out[...] = y.reshape(m, n, *out_sp).swapaxes(0, 1)
    return out


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
FUSING = (_sim_dense, _sim_conv)
FUSED_KERNELS = (_sim_relu, _sim_quant)


@register_simulator("add")
def _sim_add(
    layer: Add, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    frac = max(t.frac for t in types)
    a = _shift_left(xs[0], frac - types[0].frac, f"layer {layer.name!r} input 0")
    b = _shift_left(xs[1], frac - types[1].frac, f"layer {layer.name!r} input 1")
    return layer.out_type.quantize_int(a + b, frac)


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
