"""The RTL cost model: resources of the open da4ml Verilog flow synthesised by yosys.

:func:`qnet.export.to_verilog` traces the graph through da4ml into shift-add logic (no
multipliers, no DSP, no BRAM; purely combinational, or ``pipeline_stages`` register stages).
For each dense layer and each convolution output position (im2col row; taps that fall in the
zero padding are dropped, as da4ml drops constant zeros):

- constant products: per input, every distinct odd part ``u > 1`` of its weights is built once
  and shared by all outputs (da4ml's CMVM solver shares subexpressions; powers of two are
  wiring): ``nz_csd(u) - 1`` adders of ``a + bit_length(u)`` bits (``a`` = input width);
- accumulation: per output, ``terms - 1`` adders (``terms`` = nonzero weights) of
  ``min(acc_width, a + max bit_length(w) + ceil(log2 terms) / 2)`` bits;
- other logic ("logic bits"): one per output bit of each dense/conv output cast (round +
  saturate), ReLU, quantiser and add; two per output bit per max-pool comparison (comparator +
  2:1 mux); one per threshold per input bit for threshold layers.

``LUT = lut_per_adder_bit * adder_bits + lut_per_logic_bit * logic_bits`` and
``CARRY = carry_per_adder_bit * adder_bits`` with per-family constants
(:data:`RTL_FAMILY_MODELS`): Xilinx LUT6 + CARRY4 (0.51, 0.70, 0.19), iCE40 LUT4 + SB_CARRY
(0.53, 0, 0.34), ECP5 LUT4 + CCU2C (0.22, 0.09, 0.18). Xilinx needs ~0.5 LUT per counted adder
bit (yosys packs the adder's XOR and the operand's shifted-in constant bits into CARRY4, and
da4ml shares more than the per-input rule counts); ECP5's CCU2C holds two full adder bits, so
most adder bits cost no LUT4 at all. FF = 0 for combinational logic; with
``pipeline_stages = N`` the model adds ``N * (widest tensor in bits)`` FF (not calibrated).
Latency is ``N`` cycles, II 1.

Calibration, iCE40 and ECP5: YoWASP yosys 0.70 (``synth_ice40 -dsp`` / ``synth_ecp5``) and
nextpnr 0.11.1 through :func:`qnet.export.opensynth.run_open_flow` on the icebreaker and the
ulx3s, for the seeded graphs of tests/data/rtl_open_flow.json (``python benchmarks/rtl.py
collect``; ``fit`` gives the least-squares constants on the relative error, ``table`` the
figures below). LUT estimate / yosys LUT on the fitted designs: MLP 8-8-10 2b ice40 0.93,
ecp5 0.79; ConvNet1d (2,4) 2b 1.18, 1.03; MLP 16-16-10 2b 0.84, 0.56; MLP 4-4-10 8b 0.96,
1.31. Held out (chosen before the fit): MLP 16-12-10 2b ice40 0.86, ecp5 0.54. CARRY within
0.79-1.08 on every row. iCE40 is within 0.84-1.18; ECP5 is the weak one (0.54-1.31): yosys
0.70's ECP5 mapping of 2-bit-weight MLPs takes about twice the LUT4s per counted adder bit of
the 8-bit one, which one constant per family cannot follow. After place and route, iCE40 uses
11-25 % more LUTs than yosys counts (route-through LUTs for carries and flip-flops); ECP5
within 1 %. Xilinx: yosys 0.23 ``synth_xilinx -family xc7`` (not refitted): MLP 8-8-10 4b 904
LUT (1.01), MLP 64-32-16-10 4b 19,480 (1.00), ConvNet2d (2,4) 4b 12,668 (1.00); two more MLP
8-8-10 seeds within 0.85-1.01; a 2-bit MLP 16-16-10 1.26x. The hls model is off by 0.3x-3.5x
on the same designs. Tests: tests/hw/test_estimate_rtl.py.

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
    "xilinx": RtlFamilyModel("xilinx", 0.51, 0.51, 0.70, 0.19, 0.19),
    "ice40": RtlFamilyModel("ice40", 1.66, 0.793, 0.0, 1.204, 0.454),
    "ecp5": RtlFamilyModel("ecp5", 0.367, 0.448, 0.0, 0.765, 0.249),
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
                acc = _mac_bounds(layer, out[src.name], src.out_type)
                out[layer.name] = _cast_bounds(t, *acc, layer.acc_type.frac)
            elif isinstance(layer, ReLU | Quant):
                src = graph[layer.inputs[0]]
                lo, hi = out[src.name]
                if isinstance(layer, ReLU):
                    lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
                out[layer.name] = _cast_bounds(t, lo, hi, src.out_type.frac)
            elif isinstance(layer, MaxPool):
                out[layer.name] = out[layer.inputs[0]]
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
        taps = int(np.prod(layer.kernel))
        cols = np.repeat(cols, taps)
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
    an odd part costs about one adder however many CSD digits it has); per output, the ``terms`` nonzero products are summed by ``terms - 1`` adders of
    ``min(acc_width, a + w_eff + ceil(log2 terms) / 2)`` bits (the average width of a
    balanced tree whose lower levels are narrower: sum bits). Constant inputs and outputs
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


@register_rtl_estimator("input", "flatten")
def _wiring(layer: Layer, graph: HwGraph, family: RtlFamilyModel, board: Board) -> LayerEstimate:
    return LayerEstimate(name=layer.name, kind=layer.kind, note="wiring")


@register_rtl_estimator("dense", "conv")
def _rtl_mac(layer: Layer, graph: HwGraph, family: RtlFamilyModel, board: Board) -> LayerEstimate:
    assert isinstance(layer, Dense | Conv)
    adders, prod_bits, sum_bits = _rtl_mac_bits(layer, graph, _BOUNDS.get(id(graph)))
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
