"""The bit-accurate simulator: what the hardware computes, bit for bit, in NumPy.

This module is the driver: it quantises the float input by the input ``FixedType``, runs each
layer's simulation function from :data:`~qnet.hw.sim_layers.SIMULATORS` in graph order (fusing
dense/conv with the ReLU/Quant after them unless every layer is traced), and converts the
output mantissas back to float. The per-kind kernels live in :mod:`qnet.hw.sim_layers`, the
exact integer arithmetic they share (and why its float fast paths are exact) in
:mod:`qnet.hw.sim_arith`.

Memory. :func:`simulate` runs the batch in chunks sized from a memory budget
(:data:`DEFAULT_MEMORY_BUDGET`, or ``memory_budget=``), so the working memory beyond the input
and the output is bounded by the budget whatever the batch size; the input may be a
memory-mapped array. :func:`simulate_iter` streams an iterable of batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from qnet.errors import DataError, FormatError
from qnet.hw.fixed import FixedType, Overflow
from qnet.hw.graph import Conv, Dense, HwGraph
from qnet.hw.sim_arith import _round_inplace, compact_dtype
from qnet.hw.sim_layers import COMPACT_KINDS, FUSED_KERNELS, FUSIBLE, FUSING, SIMULATORS

__all__ = [
    "simulate",
    "simulate_int",
    "simulate_iter",
    "chunk_size",
    "batches_of",
    "DEFAULT_MEMORY_BUDGET",
]

#: Default working memory of one chunk of the batch, in bytes (see :func:`chunk_size`).
DEFAULT_MEMORY_BUDGET = 48 * 2**20

#: BLAS threads while simulating. One: on these shared 2-core machines OpenBLAS' second,
#: spinning thread made the simulator up to 3x slower under load, and the batch is chunked
#: so that each product is small anyway. ``None`` leaves the BLAS library's own setting.
BLAS_THREADS: int | None = 1
_CONTROLLER: list[Any] = []


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
        if layer.kind not in ("dense", "conv") or SIMULATORS.get(layer.kind) not in FUSING:
            continue
        chain: list[Any] = []
        last = layer
        while (
            last is not graph.output
            and len(consumers[last.name]) == 1
            and consumers[last.name][0].kind in FUSIBLE
            and consumers[last.name][0].inputs == (last.name,)
            and SIMULATORS.get(consumers[last.name][0].kind) in FUSED_KERNELS
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
