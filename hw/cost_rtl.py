"""The RTL cost model: resources of the open da4ml Verilog flow synthesised by yosys.

:func:`qnet.export.to_verilog` traces the graph through da4ml into shift-add logic (no
multipliers, no DSP, no BRAM; purely combinational, or ``pipeline_stages`` register stages).
For each dense layer and each convolution output position (im2col row; taps that fall in the
zero padding are dropped, as da4ml drops constant zeros), counting only live features (interval
bounds, :func:`value_bounds`: an input that is constant, e.g. a ReLU that is zero for every
input, is folded into the bias, and an output that is constant, or that its ReLU always
zeroes, needs no logic; da4ml's tracer and yosys drop both):

- product bits: per input, every distinct odd part ``u > 1`` of its weights is built once and
  shared by all outputs (powers of two are wiring), one adder of ``a + bit_length(u)`` bits
  each (``a`` = input width): da4ml builds the constants of one input from each other, as
  multiple-constant multiplication does, so a constant costs about one adder whatever its
  number of CSD digits (counting ``nz_csd(u) - 1`` adders over-counted 8-bit layers by up to
  2x against the adders da4ml emits);
- sum bits: per output, ``terms - 1`` adders (``terms`` = nonzero weights) of
  ``min(acc_width, a + max bit_length(w) + ceil(log2 terms) / 2)`` bits, the output's adder
  tree;
- logic bits: one per output bit of each dense/conv output cast (round + saturate), ReLU,
  quantiser and add; two per output bit per max-pool comparison (comparator + 2:1 mux); one per
  threshold per input bit for threshold layers.

Product and sum bits are counted apart because yosys maps them differently: a product's
output fans out to many sums, so it stays a two-operand adder on the carry chain, while the
single-fanout adders of an output's tree are merged by yosys' ``alumacc`` into multi-operand
adders (``$macc``), built as carry-save full adders in LUTs in front of one carry chain. On
ECP5 that decides the LUT count: a CCU2C carry cell holds two adder bits and no LUT4 is
counted for them, so the LUT4s are mostly the carry-save bits (2.4-3.2 LUT4 per merged
operand bit on the measured designs), which depend on how many adders yosys merged.

``LUT = lut_per_product_bit * product_bits + lut_per_sum_bit * sum_bits + lut_per_logic_bit *
logic_bits`` and ``CARRY = carry_per_product_bit * product_bits + carry_per_sum_bit *
sum_bits``, per family (:data:`RTL_FAMILY_MODELS`). FF = 0 for combinational logic; with
``pipeline_stages = N`` the model adds ``N * (widest tensor in bits)`` FF (not calibrated).
Latency is ``N`` cycles, II 1.

Calibration (tests/data/rtl_open_flow.json, ``python benchmarks/rtl.py collect``, then
``fit`` for the constants and ``table`` for the figures; docs/rtl_estimator.md): YoWASP yosys
0.70 (``synth_ice40 -dsp``, ``synth_ecp5``, ``synth_xilinx -family xc7``) through
:func:`qnet.export.opensynth.run_open_flow`, with nextpnr 0.11.1 place and route on the
icebreaker and the ulx3s (Xilinx: synthesis only, there is no open place and route for it
here); seeded MLPs and ConvNets at 2, 4 and 8 bits, plus a 2-bit MLP trained on digits. The
constants are least squares on the relative error over the fitted rows; per family and count
the form (one constant for all adder bits, or product and sum bits apart) with the smaller
leave-one-out error was kept: one constant for the LUTs of every family, product and sum
apart for iCE40/ECP5 carry cells. Held-out designs were chosen before any fit. Estimate /
yosys LUT: iCE40 0.57-1.43 fitted (12 designs, mean error 23 %), 0.63-1.18 held out (7, 17
%); ECP5 0.57-1.92 fitted (28 %), 0.41-0.93 held out (32 %: the LUT4 count follows yosys'
adder merging, see above; the trained MLP 0.59); Xilinx 0.64-1.51 fitted (11, 22 %),
0.69-1.00 held out (6, 17 %). The worst row, ConvNet1d (2,2) fc6 4b (1.43 iCE40, 1.92 ECP5,
1.51 Xilinx), is a design yosys reduces far below the adders da4ml emits. CARRY: 0.61-1.52
fitted, 0.40-1.83 held out. After place and route iCE40 uses 3-62 % more LUTs than yosys
counts (route-throughs for carries and flip-flops; most on the smallest designs), ECP5 0-2 %.
The Xilinx constants replace those fitted on yosys 0.23 (apt), which is not on the machines
any more. Tests: tests/hw/test_estimate_rtl.py.

The per-family constants (:data:`RTL_FAMILY_MODELS`) are the only fitted numbers of this model
and are kept together here; a refit changes that table and the calibration figures above.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from qnet.errors import ConfigError
from qnet.hw.boards import Board
from qnet.hw.cost_common import LayerEstimate, _bit_length, _csd_nonzeros, _odd_part
from qnet.hw.fixed import FixedType, Overflow
from qnet.hw.graph import (
    AvgPool,
    Concat,
    Conv,
    Dense,
    Flatten,
    HwGraph,
    Layer,
    MaxPool,
    MultiThreshold,
    Quant,
    ReLU,
)
from qnet.hw.options import BuildOptions

__all__ = [
    "RTL_ESTIMATORS",
    "RTL_FAMILY_MODELS",
    "RTL_FAMILY_OF",
    "RtlFamilyModel",
    "register_rtl_estimator",
    "rtl_family_model",
    "rtl_row",
    "rtl_rows",
]


@dataclass(frozen=True)
class RtlFamilyModel:
    """Per-family constants of the RTL-flow (da4ml shift-add) model, fitted to yosys runs.

    Two kinds of adder bits are counted apart because yosys maps them differently: product
    bits (the shared constant products ``x * u`` of each input, whose outputs fan out to many
    sums) stay two-operand adders on the carry chain, while sum bits (each output's adder
    tree, single-fanout chains) are merged by yosys' ``alumacc`` into multi-operand adders,
    built as carry-save LUT logic in front of one carry chain. ``lut_per_logic_bit`` turns the
    cast/ReLU/max-pool bits into LUTs; the carry constants turn adder bits into carry cells
    (CARRY4 = 4 bits, SB_CARRY = 1 bit, CCU2C = 2 bits, times the fraction yosys keeps on a
    chain).
    """

    name: str
    lut_per_product_bit: float
    lut_per_sum_bit: float
    lut_per_logic_bit: float
    carry_per_product_bit: float
    carry_per_sum_bit: float


#: Fitted to the yosys figures in the module docstring (tests/hw/test_estimate_rtl.py).
RTL_FAMILY_MODELS: dict[str, RtlFamilyModel] = {
    "xilinx": RtlFamilyModel("xilinx", 0.539, 0.539, 0.0, 0.227, 0.227),
    "ice40": RtlFamilyModel("ice40", 0.885, 0.885, 0.0, 1.078, 0.479),
    "ecp5": RtlFamilyModel("ecp5", 0.334, 0.334, 0.0, 0.624, 0.263),
}
#: board family -> RTL model
RTL_FAMILY_OF: dict[str, str] = {
    "zynq7000": "xilinx",
    "artix7": "xilinx",
    "kintex7": "xilinx",
    "virtex7": "xilinx",
    "zynquplus": "xilinx",
    "kintexuplus": "xilinx",
    "virtexuplus": "xilinx",
    "ice40": "ice40",
    "ecp5": "ecp5",
}


def rtl_family_model(family: str) -> RtlFamilyModel:
    """The RTL-flow constants of a board family (ConfigError for a family without a model)."""
    key = RTL_FAMILY_OF.get(family)
    if key is None:
        raise ConfigError(
            f"the rtl flow has no model for board family {family!r}; known families: "
            f"{', '.join(sorted(RTL_FAMILY_OF))}"
        )
    return RTL_FAMILY_MODELS[key]


#: (lo, hi) int64 mantissa bounds of a tensor: one entry per feature of a flat tensor, one per
#: channel of a tensor with spatial dims.
Bounds = tuple[np.ndarray, np.ndarray]


def _full(t: FixedType, shape: tuple[int, ...]) -> Bounds:
    n = int(shape[0]) if len(shape) > 1 else int(np.prod(shape))
    return np.full(n, t.int_min, dtype=np.int64), np.full(n, t.int_max, dtype=np.int64)


def _cast_bounds(t: FixedType, lo: np.ndarray, hi: np.ndarray, frac: int) -> Bounds:
    """Bounds after casting exact values ``[lo, hi] * 2**-frac`` into ``t`` (rounding and
    saturation are monotone; a wrapping cast of values out of range can give anything)."""
    scale = np.ldexp(1.0, -frac)
    if t.overflow == Overflow.WRAP and (
        float(lo.min(initial=0)) * scale < t.min or float(hi.max(initial=0)) * scale > t.max
    ):
        return _full(t, lo.shape)
    return t.quantize_int(lo, frac), t.quantize_int(hi, frac)


def _mac_bounds(layer: Dense | Conv, x: Bounds, x_t: FixedType) -> Bounds:
    """Bounds of ``W x + b`` (accumulator mantissas, ``frac`` of the exact sum)."""
    w = layer.weight.astype(np.int64)
    pos, neg = np.maximum(w, 0), np.minimum(w, 0)
    shape = (w.shape[0], w.shape[1]) + (1,) * (w.ndim - 2)
    lo_x, hi_x = x[0].reshape(1, -1, *shape[2:]), x[1].reshape(1, -1, *shape[2:])
    tap_hi = pos * hi_x + neg * lo_x  # per output, input channel and tap
    tap_lo = pos * lo_x + neg * hi_x
    axes = tuple(range(1, w.ndim))
    if isinstance(layer, Conv) and any(layer.padding):
        # border positions drop the taps in the zero padding: any subset of taps can be missing
        hi, lo = np.maximum(tap_hi, 0).sum(axis=axes), np.minimum(tap_lo, 0).sum(axis=axes)
    else:
        hi, lo = tap_hi.sum(axis=axes), tap_lo.sum(axis=axes)
    frac = x_t.frac + layer.weight_type.frac
    if layer.bias is not None and layer.bias_type is not None:
        b_frac = layer.bias_type.frac
        top = max(frac, b_frac)
        b = layer.bias.astype(np.int64) << (top - b_frac)
        lo, hi, frac = (lo << (top - frac)) + b, (hi << (top - frac)) + b, top
    lo, hi = _cast_bounds(layer.acc_type, lo, hi, frac)
    return lo, hi


def value_bounds(graph: HwGraph) -> dict[str, Bounds]:
    """Per layer, bounds of its output mantissas by interval arithmetic (as da4ml's tracer
    sizes every signal). A feature whose bounds are equal is a constant: da4ml folds it and
    drops the logic that only fed it. Layer kinds this does not follow get their type's range.
    """
    out: dict[str, Bounds] = {}
    for layer in graph.layers:
        t = layer.out_type
        try:
            if isinstance(layer, Dense | Conv):
                src = graph[layer.inputs[0]]
                plain = layer.dense_equivalent() if isinstance(layer, Conv) else layer
                acc = _mac_bounds(plain, out[src.name], src.out_type)
                out[layer.name] = _cast_bounds(t, *acc, layer.acc_type.frac)
            elif isinstance(layer, ReLU | Quant):
                src = graph[layer.inputs[0]]
                lo, hi = out[src.name]
                if isinstance(layer, ReLU):
                    lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
                out[layer.name] = _cast_bounds(t, lo, hi, src.out_type.frac)
            elif isinstance(layer, MaxPool):
                out[layer.name] = out[layer.inputs[0]]
            elif isinstance(layer, Concat):  # exact casts into out_type, then concatenated
                parts = [_cast_bounds(t, *out[s], graph[s].out_type.frac) for s in layer.inputs]
                if layer.axis == 0:  # features / channels: one after the other
                    los, his = [p[0] for p in parts], [p[1] for p in parts]
                    out[layer.name] = np.concatenate(los), np.concatenate(his)
                else:  # a spatial axis: each channel takes values from every input
                    lo = np.min([p[0] for p in parts], axis=0)
                    out[layer.name] = lo, np.max([p[1] for p in parts], axis=0)
            elif isinstance(layer, Flatten):
                src = graph[layer.inputs[0]]
                reps = int(np.prod(src.out_shape[1:])) if len(src.out_shape) > 1 else 1
                lo, hi = out[src.name]
                out[layer.name] = np.repeat(lo, reps), np.repeat(hi, reps)
            else:
                out[layer.name] = _full(t, tuple(layer.out_shape))
        except (KeyError, ValueError, OverflowError, ArithmeticError):
            out[layer.name] = _full(t, tuple(layer.out_shape))
    return out


def _live(layer: Dense | Conv, graph: HwGraph, bounds: dict[str, Bounds]) -> tuple[Any, Any]:
    """(live outputs, live inputs) of a dense/conv layer: constant inputs are folded into the
    bias, and outputs that are constant, or that every consumer (ReLUs) turns into a constant,
    need no adders."""
    lo_x, hi_x = bounds[layer.inputs[0]]
    cols = lo_x != hi_x
    lo, hi = bounds[layer.name]
    rows = lo != hi
    users = [u for u in graph.layers if layer.name in u.inputs]
    if users and all(isinstance(u, ReLU) for u in users):
        rows = rows & np.any([bounds[u.name][0] != bounds[u.name][1] for u in users], axis=0)
    if isinstance(layer, Conv):
        cols = np.repeat(cols, int(np.prod(layer.kernel)))
    n_out, n_in = layer.weight.shape[0], int(np.prod(layer.weight.shape[1:]))
    if rows.shape != (n_out,) or cols.shape != (n_in,):  # bounds of an unexpected layout
        return np.ones(n_out, dtype=bool), np.ones(n_in, dtype=bool)
    return rows, cols


def _tap_masks(layer: Dense | Conv, in_shape: tuple[int, ...]) -> list[tuple[np.ndarray, int]]:
    """Distinct (in-bounds tap mask over the im2col row, number of output positions).

    Padding taps are constant zeros that da4ml drops, so border positions of a convolution
    are cheaper than interior ones; positions with the same mask cost the same.
    """
    n_in = int(layer.weight.reshape(layer.weight.shape[0], -1).shape[1])
    if not isinstance(layer, Conv):
        return [(np.ones(n_in, dtype=bool), 1)]
    kernel, pad, stride = layer.kernel, layer.padding, layer.stride
    channels = int(layer.weight.shape[1])
    per_dim = []
    for d, k in enumerate(kernel):
        rows = []
        for pos in range(int(layer.out_shape[1 + d])):
            idx = np.arange(k) + pos * stride[d] - pad[d]
            rows.append(tuple(bool(v) for v in (idx >= 0) & (idx < in_shape[1 + d])))
        per_dim.append(rows)
    counts: dict[tuple[tuple[bool, ...], ...], int] = {}
    for combo in np.ndindex(*[len(r) for r in per_dim]):
        key = tuple(per_dim[d][i] for d, i in enumerate(combo))
        counts[key] = counts.get(key, 0) + 1
    out = []
    for key, count in counts.items():
        mask = np.ones((), dtype=bool)
        for d, row in enumerate(key):
            shape = [1] * len(kernel)
            shape[d] = len(row)
            mask = mask & np.asarray(row).reshape(shape)
        out.append((np.broadcast_to(mask, (channels, *kernel)).reshape(-1).copy(), count))
    return out


def _rtl_mac_bits(
    layer: Dense | Conv, graph: HwGraph, bounds: dict[str, Bounds] | None = None
) -> tuple[int, float, float]:
    """(adders, product bits, sum bits) of one constant matrix-vector product as da4ml builds it.

    Per input, the distinct odd parts ``u > 1`` of its weights are built once and shared by
    every output, one adder of ``a + bit_length(u)`` bits each (product bits: da4ml builds a
    constant from the others of the same input, as multiple-constant multiplication does, so
    an odd part costs about one adder however many CSD digits it has); per output, the
    ``terms`` nonzero products are summed by ``terms - 1`` adders of ``min(acc_width, a +
    w_eff + ceil(log2 terms) / 2)`` bits (the average width of a balanced tree whose lower
    levels are narrower: sum bits). Constant inputs and outputs
    (:func:`value_bounds`) cost nothing, as da4ml folds them.
    """
    src = graph[layer.inputs[0]]
    a = src.out_type.width
    w2 = layer.weight.reshape(layer.weight.shape[0], -1).astype(np.int64)
    rows, cols = _live(layer, graph, bounds if bounds is not None else value_bounds(graph))
    odd = _odd_part(w2)[rows]
    eff = _bit_length(w2)[rows]
    acc_w = layer.acc_type.width
    adders, prod_bits, sum_bits = 0, 0.0, 0.0
    for mask, count in _tap_masks(layer, tuple(src.out_shape)):
        mask = mask & cols
        sub_odd, sub_eff = odd[:, mask], eff[:, mask]
        for col in range(sub_odd.shape[1]):
            u = np.unique(sub_odd[:, col])
            u = u[u > 1]
            if u.size:  # one adder per odd part: da4ml builds them from each other
                adders += count * int(u.size)
                prod_bits += count * float((a + _bit_length(u)).sum())
        terms = (sub_odd > 0).sum(axis=1)
        n_acc = np.clip(terms - 1, 0, None)
        growth = np.ceil(np.log2(np.maximum(terms, 1))) / 2
        width = np.minimum(acc_w, a + sub_eff.max(axis=1, initial=0) + growth)
        adders += count * int(n_acc.sum())
        sum_bits += count * float((n_acc * width).sum())
    return adders, prod_bits, sum_bits


def _rtl_logic_bits(layer: Layer, graph: HwGraph) -> float:
    """Comparator/mux/rounding bits of the non-MAC logic of one layer.

    A dense/conv output cast (round + saturate) and a ReLU (sign test + cast) cost one unit
    per output bit; a max-pool two per output bit per comparison (comparator + 2:1 mux); a
    quantiser or an add one per output bit; threshold layers one per threshold per input bit.
    """
    n = int(np.prod(layer.out_shape))
    bits = layer.out_type.width
    if isinstance(layer, Dense | Conv) or layer.kind in ("relu", "quant", "add"):
        return float(n * bits)
    if isinstance(layer, MaxPool | AvgPool):
        return float(n * (int(np.prod(layer.kernel)) - 1) * bits * 2)
    if isinstance(layer, MultiThreshold):
        return float(n * int(layer.thresholds.shape[1]) * graph.in_type(layer).width)
    return 0.0


#: value bounds of the graph being estimated (id -> bounds), shared by its layers' estimators
_BOUNDS: dict[int, dict[str, Bounds]] = {}
#: What one layer costs in the rtl flow: (layer, graph, family constants, board) -> row.
RtlEstimator = Callable[[Layer, HwGraph, RtlFamilyModel, Board], LayerEstimate]
#: layer kind -> rtl-flow estimator (explicit registry; duplicates refused)
RTL_ESTIMATORS: dict[str, RtlEstimator] = {}


def register_rtl_estimator(*kinds: str) -> Callable[[RtlEstimator], RtlEstimator]:
    """Decorator registering the rtl-flow estimator of layer kinds (duplicates are refused)."""

    def deco(fn: RtlEstimator) -> RtlEstimator:
        for kind in kinds:
            if kind in RTL_ESTIMATORS:
                raise ValueError(f"an rtl estimator for layer kind {kind!r} is already registered")
            RTL_ESTIMATORS[kind] = fn
        return fn

    return deco


def rtl_row(
    layer: Layer,
    family: RtlFamilyModel,
    add_bits: float,
    logic_bits: float,
    mults: int = 0,
    free: int = 0,
    note: str = "",
    *,
    sum_bits: float = 0.0,
    **extra: int,
) -> LayerEstimate:
    """The row of a layer with ``add_bits`` product adder bits, ``sum_bits`` adder-tree bits and
    ``logic_bits`` other logic bits (see :class:`RtlFamilyModel`)."""
    lut = (
        family.lut_per_product_bit * add_bits
        + family.lut_per_sum_bit * sum_bits
        + family.lut_per_logic_bit * logic_bits
    )
    carry = family.carry_per_product_bit * add_bits + family.carry_per_sum_bit * sum_bits
    return LayerEstimate(
        name=layer.name,
        kind=layer.kind,
        mults=mults,
        lut_mults=mults - free,
        free_mults=free,
        lut=round(lut),
        carry=round(carry),
        latency_cycles=0,
        ii_cycles=1,
        note=note,
        **extra,
    )


@register_rtl_estimator("input", "flatten", "concat")
def _wiring(layer: Layer, graph: HwGraph, family: RtlFamilyModel, board: Board) -> LayerEstimate:
    return LayerEstimate(name=layer.name, kind=layer.kind, note="wiring")


@register_rtl_estimator("dense", "conv")
def _rtl_mac(layer: Layer, graph: HwGraph, family: RtlFamilyModel, board: Board) -> LayerEstimate:
    assert isinstance(layer, Dense | Conv)
    # grouped/dilated: the plain equivalent's extra weights are zeros, which da4ml drops
    plain = layer.dense_equivalent() if isinstance(layer, Conv) else layer
    adders, prod_bits, sum_bits = _rtl_mac_bits(plain, graph, _BOUNDS.get(id(graph)))
    w2 = layer.weight.reshape(layer.weight.shape[0], -1)
    positions = int(np.prod(layer.out_shape[1:])) if isinstance(layer, Conv) else 1
    mults = int(w2.size) * positions
    free = int(np.count_nonzero(_csd_nonzeros(w2) <= 1)) * positions
    logic = _rtl_logic_bits(layer, graph)
    note = f"{adders:,} shift-add adders"
    return rtl_row(layer, family, prod_bits, logic, mults, free, note, sum_bits=sum_bits)


@register_rtl_estimator("relu", "quant", "add", "maxpool", "avgpool", "multithreshold")
def _rtl_logic(layer: Layer, graph: HwGraph, family: RtlFamilyModel, board: Board) -> LayerEstimate:
    return rtl_row(layer, family, 0.0, _rtl_logic_bits(layer, graph))


def _rtl_rows(
    graph: HwGraph, family: RtlFamilyModel, board: Board
) -> tuple[list[LayerEstimate], list[str]]:
    rows: list[LayerEstimate] = []
    warnings: list[str] = []
    _BOUNDS[id(graph)] = value_bounds(graph)  # once per estimate, not once per layer
    try:
        for layer in graph.layers:
            fn = RTL_ESTIMATORS.get(layer.kind)
            if fn is None:
                msg = f"no rtl estimate for layer {layer.name!r} of kind {layer.kind!r}"
                warnings.append(msg + " (counted as zero)")
                rows.append(LayerEstimate(name=layer.name, kind=layer.kind, note=msg))
                continue
            rows.append(fn(layer, graph, family, board))
    finally:
        _BOUNDS.pop(id(graph), None)
    return rows, warnings


def rtl_rows(
    graph: HwGraph, options: BuildOptions, pipeline_stages: int
) -> tuple[list[LayerEstimate], list[str]]:
    """Per-layer rows and warnings of the rtl flow (``pipeline_stages`` register stages)."""
    if isinstance(options.reuse_factor, Mapping) or options.reuse_factor != 1:
        raise ConfigError(
            f"the rtl flow is fully parallel (da4ml shift-add logic): reuse factor must be 1, "
            f"got {dict(options.reuse_factor) if isinstance(options.reuse_factor, Mapping) else options.reuse_factor!r}"
        )
    if isinstance(pipeline_stages, bool) or not isinstance(pipeline_stages, int | np.integer):
        raise ConfigError(f"pipeline_stages must be an integer >= 0, got {pipeline_stages!r}")
    if pipeline_stages < 0:
        raise ConfigError(f"pipeline_stages must be >= 0, got {pipeline_stages}")
    family = rtl_family_model(options.board_spec.family)
    rows, warnings = _rtl_rows(graph, family, options.board_spec)
    if pipeline_stages > 0:
        # one register stage holds about the widest tensor of the design (uncalibrated)
        widest = max(int(np.prod(r.out_shape)) * r.out_type.width for r in graph.layers)
        rows = [
            *rows,
            LayerEstimate(
                name="pipeline",
                kind="registers",
                ff=pipeline_stages * widest,
                latency_cycles=0,
                note=f"{pipeline_stages} register stage(s)",
            ),
        ]
    return rows, warnings
