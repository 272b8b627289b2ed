"""The bit-accurate simulator: what the hardware computes, bit for bit, in NumPy.

Tensors are int64 mantissas of their producer's ``out_type`` (batch first). Each layer kind
has one simulation function in :data:`SIMULATORS` (explicit registry).

Exactness. Integer arithmetic throughout. Matrix products (dense, im2col convolution) use
float32 / float64 BLAS only when it is provably exact: every partial sum is an integer whose magnitude is
at most ``bound = max|x| * max_row sum|w| + max|b|``; when ``bound < 2**53`` every partial
sum, in any summation order, is an exactly representable float64 integer, so the float64 result
is the exact integer (likewise float32 below ``2**24``). Otherwise the product is computed in int64 (exact while
``bound < 2**63``; past that :class:`~qnet.errors.FormatError`).

Accumulators. The hardware accumulates ``x * w`` products and the bias in ``acc_type`` and
then casts to ``out_type``. The simulator computes the exact sum and casts it to ``acc_type``
(``quantize_int``), then to ``out_type``. That is the hardware's result whenever the products
are exact in ``acc_type`` (its ``frac`` is at least input ``frac`` + weight ``frac``) and the
accumulator either cannot overflow (qnet sizes it so) or wraps (two's complement wrapping is
the same after every addition or once at the end).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from qnet.errors import DataError, FormatError, InternalError
from qnet.hw.fixed import FixedType
from qnet.hw.graph import (
    Add,
    AvgPool,
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
    "SIMULATORS",
    "register_simulator",
    "matmul_exact",
    "FLOAT_EXACT_LIMIT",
]

#: Largest integer magnitude below which float64 sums of integers are exact.
FLOAT_EXACT_LIMIT = 2**53
#: Same for float32 (24-bit significand).
FLOAT32_EXACT_LIMIT = 2**24
_INT_LIMIT = 2**62

#: Signature: (layer, graph, input mantissas, input types) -> output mantissas (int64)
SimFn = Callable[[Any, HwGraph, list[np.ndarray], list[FixedType]], np.ndarray]
SIMULATORS: dict[str, SimFn] = {}


def register_simulator(kind: str) -> Callable[[SimFn], SimFn]:
    """Decorator: register the simulation function of a layer kind (duplicates refused)."""

    def deco(fn: SimFn) -> SimFn:
        if kind in SIMULATORS:
            raise ValueError(f"a simulator for layer kind {kind!r} is already registered")
        SIMULATORS[kind] = fn
        return fn

    return deco


# ------------------------------------------------------------------------------ helpers
def _abs_max(a: np.ndarray) -> int:
    return int(np.abs(a).max()) if a.size else 0


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


def _accumulate(
    layer: Dense | Conv, products: np.ndarray, prod_frac: int, channel_axis: int
) -> np.ndarray:
    """Add the bias, cast to acc_type, then to out_type (see module docstring)."""
    acc_type = layer.acc_type
    if acc_type.frac < prod_frac:
        raise FormatError(
            f"layer {layer.name!r}: acc_type {acc_type} has {acc_type.frac} fractional bits but the "
            f"products need {prod_frac}; the accumulator would round every product"
        )
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


def _windows(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...]) -> np.ndarray:
    """Sliding windows over the trailing spatial dims: (N, C, *out, *kernel)."""
    dims = len(kernel)
    win = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=tuple(range(2, 2 + dims)))
    index = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)
    return win[index]


# ----------------------------------------------------------------------------- layers
@register_simulator("input")
def _sim_input(
    layer: Input, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    raise InternalError("the input layer is not simulated by dispatch")


@register_simulator("quant")
def _sim_quant(
    layer: Quant, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    return layer.out_type.quantize_int(xs[0], types[0].frac)


@register_simulator("relu")
def _sim_relu(
    layer: ReLU, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    return layer.out_type.quantize_int(np.maximum(xs[0], 0), types[0].frac)


@register_simulator("flatten")
def _sim_flatten(
    layer: Flatten, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x = xs[0]
    flat = x.reshape(x.shape[0], -1)
    return layer.out_type.quantize_int(flat, types[0].frac)


@register_simulator("dense")
def _sim_dense(
    layer: Dense, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x = xs[0]
    products = matmul_exact(x, layer.weight.T)
    return _accumulate(layer, products, types[0].frac + layer.weight_type.frac, channel_axis=1)


@register_simulator("conv")
def _sim_conv(
    layer: Conv, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    w2 = layer.weight.reshape(layer.weight.shape[0], -1)
    # Convert once, before im2col, so the window copy is made in the (exact) BLAS dtype.
    dtype = _exact_dtype(_bound(_abs_max(xs[0]), w2.T))
    x = xs[0].astype(dtype, copy=False)
    dims = layer.dims
    pad = [(0, 0), (0, 0)] + [(p, p) for p in layer.padding]
    if any(layer.padding):
        x = np.pad(x, pad)
    win = _windows(x, layer.kernel, layer.stride)  # (N, C, *out, *k)
    n = win.shape[0]
    out_sp = win.shape[2 : 2 + dims]
    # (N, *out, C, *k) -> (N * prod(out), C * prod(k))
    perm = (0, *range(2, 2 + dims), 1, *range(2 + dims, 2 + 2 * dims))
    cols = win.transpose(perm).reshape(n * int(np.prod(out_sp)), -1)
    products = (cols @ w2.T.astype(dtype)).astype(np.int64)
    products = np.moveaxis(products.reshape(n, *out_sp, -1), -1, 1)
    return _accumulate(layer, products, types[0].frac + layer.weight_type.frac, channel_axis=1)


@register_simulator("maxpool")
def _sim_maxpool(
    layer: MaxPool, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    win = _windows(xs[0], layer.kernel, layer.stride)
    dims = len(layer.kernel)
    out = win.max(axis=tuple(range(-dims, 0)))
    return layer.out_type.quantize_int(out, types[0].frac)


@register_simulator("avgpool")
def _sim_avgpool(
    layer: AvgPool, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    win = _windows(xs[0], layer.kernel, layer.stride)
    dims = len(layer.kernel)
    total = win.sum(axis=tuple(range(-dims, 0)))
    log2n = int(np.prod(layer.kernel)).bit_length() - 1
    return layer.out_type.quantize_int(total, types[0].frac + log2n)


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


# ----------------------------------------------------------------------------- driver
def _check_input(graph: HwGraph, x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    shape = graph.input.out_shape
    if arr.shape == shape:
        arr = arr[None]
    if arr.shape[1:] != shape:
        raise DataError(
            f"input has shape {arr.shape}; the graph expects (N, {', '.join(map(str, shape))})"
        )
    return arr


def simulate_int(graph: HwGraph, x: np.ndarray, trace: bool = False) -> dict[str, np.ndarray]:
    """Run the graph on float input ``x``; return int64 mantissas.

    Returns the output layer's mantissas under its name, or every layer's when ``trace``.
    """
    arr = _check_input(graph, x)
    values: dict[str, np.ndarray] = {graph.input.name: graph.input.out_type.to_int(arr)}
    remaining = {layer.name: 0 for layer in graph.layers}
    for layer in graph.layers:
        for src in layer.inputs:
            remaining[src] += 1
    for layer in graph.layers[1:]:
        fn = SIMULATORS.get(layer.kind)
        if fn is None:
            raise FormatError(f"layer {layer.name!r}: no simulator for layer kind {layer.kind!r}")
        ins = [values[src] for src in layer.inputs]
        types = [graph[src].out_type for src in layer.inputs]
        values[layer.name] = fn(layer, graph, ins, types)
        if not trace:  # free what no later layer reads
            for src in layer.inputs:
                remaining[src] -= 1
                if remaining[src] == 0 and src != graph.output.name:
                    del values[src]
    if trace:
        return values
    return {graph.output.name: values[graph.output.name]}


def simulate(
    graph: HwGraph, x: np.ndarray, trace: bool = False
) -> np.ndarray | dict[str, np.ndarray]:
    """Bit-accurate simulation of ``graph`` on float input ``x`` (N, *input shape).

    ``x`` is quantised once by the input ``FixedType``. Returns the output as exact float64
    values, or with ``trace=True`` a dict of every layer's output (float64) by layer name.
    """
    mantissas = simulate_int(graph, x, trace=trace)
    if trace:
        return {name: graph[name].out_type.from_int(m) for name, m in mantissas.items()}
    out = graph.output
    return out.out_type.from_int(mantissas[out.name])
