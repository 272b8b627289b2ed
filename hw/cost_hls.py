"""The hls4ml cost model: resources and latency of the hardware hls4ml builds.

The hls model describes the hardware qnet exports through hls4ml (``io_parallel`` / ``io_stream``,
``Latency`` / ``Resource`` strategies, one global reuse factor). It is pure NumPy, needs no
vendor tool and runs in milliseconds. Its figures aim at the *Vivado HLS C-synthesis
estimate* (``csynth.xml``), which is what hls4ml users compare; post-synthesis LUT counts are
typically about half of it (published hls4ml SVHN CNN: 245k HLS vs 124k synthesised LUTs).

Formulas (sources in brackets)
------------------------------
Multiplications. A dense layer has ``n_in * n_out`` products, a convolution ``n_in * n_out``
per output pixel with ``n_in = C_in * prod(kernel)`` (hls4ml im2col view) [hls4ml docs,
"Reuse factor"]. With reuse factor ``R`` each hardware multiplier is used ``R`` times, so a
layer instantiates ``n_in * n_out / R`` multipliers and accepts a new input every ``R`` cycles
(``II = R``) [hls4ml docs "Concepts: reuse factor"; hls4ml ``nnet_dense_latency.h``]. hls4ml
only accepts ``R`` for which ``_validate_reuse_factor`` holds (see
:func:`qnet.hw.options.valid_reuse_factors`).

How a product maps (``R == 1`` and the Latency strategy: weights are compile-time constants
that Vivado HLS folds):

- a weight of 0 costs nothing (hls4ml's pruning relies on it); a weight ``+-2^k`` is a shift,
  no multiplier;
- otherwise the constant's *effective width* is ``bit_length(odd part of |w|) + 1``; when the
  product is narrow -- one operand at most 4 bits, or both together at most 10 bits -- Vivado
  HLS builds it in LUTs [UG902 "Vivado HLS", binding of ``mul`` to ``LUT`` vs ``DSP``;
  Xilinx AR 67475], here as a canonical-signed-digit shift-add: ``(nz_csd(w) - 1)`` adders of
  ``a_bits + eff_bits`` LUTs;
- otherwise DSP slices: one when the operands fit the DSP multiplier (DSP48E1 25x18,
  DSP48E2 27x18, iCE40 SB_MAC16 16x16, ECP5 18x18; UG479, UG579), else
  ``ceil(a / (A-1)) * ceil(b / (B-1))`` slices (cascaded partial products).

With ``R > 1`` or the Resource strategy the weight is not a constant at the multiplier: every
multiplier has the full weight width, the narrow rule above decides LUT vs DSP, and a LUT
multiplier costs FINN's ``(2 * ceil((a + w) / 6) - 1) * (a + w)`` LUTs [FINN
``MatrixVectorActivation.lut_estimation``, Umuroglu et al. FPL 2017 / Blott et al. TRETS 2018].

Adders and registers. Each product is summed in ``acc_type`` (qnet sizes it exactly):
``n_out * (terms - 1 + has_bias)`` adders of ``acc_width`` bits, one LUT per bit on the carry
chain, times ``LUT_PER_ADDER_BIT`` which absorbs HLS's estimate overhead (fitted, below). FFs:
``FF_PER_ADDER_BIT`` of those bits are pipeline registers, plus the output register.
Operand multiplexers of shared multipliers (``R > 1``, Latency strategy) cost
``mux_luts(R) = max(0.5, (R - 1) / 3)`` LUT6 per operand bit (an R:1 mux per bit in a tree of
4:1 LUT6 muxes; 2:1 muxes pack two bits per LUT6_2). The input operand selects among at most
``n_in`` distinct inputs, so its mux is ``min(R, n_in)``:1 (for ``R > n_in`` hls4ml's
``dense_resource_rf_gt_nin`` walks the inputs cyclically); the weight operand's is ``R``:1.

Memories. Resource strategy stores weights in BRAM: words of ``(n_in*n_out/R) * w_bits`` bits,
``R`` deep, packed into 18-Kbit blocks in their best aspect ratio (16K x 1 ... 512 x 36)
[UG473 / UG573]. In ``io_stream`` every tensor between layers is a FIFO of depth = its pixel
count and width = channels x bits [hls4ml ``VivadoStreamVariableConverter``: ``depth =
prod(shape[:-1])``]; FIFOs of depth >= 64 go to BRAM, shallower ones to SRL32 LUTs.

Latency. ``io_parallel``: the whole network is one pipeline; a layer's latency is
``R - 1`` (reuse) ``+ 1`` (multiplier stage, when there are multipliers) ``+ ceil(log2(terms) *
T_ADD_NS / clock_period)`` (adder tree chained within a cycle), and the design's II is the
largest layer II. ``io_stream``: layers are a dataflow pipeline; a layer's II is
``beats * R`` (beats = pixels read from its input stream), the design's II the largest layer
II and the latency that II plus every layer's pipeline depth [hls4ml docs "io_stream";
FINN's dataflow cycle model ``(n_in/SIMD)*(n_out/PE)`` per layer is the same count].

Calibration (tests/hw/test_estimate.py) against published designs: hls4ml jet-tagging MLP at
reuse 1 and 2 (J1, J2), hls4ml's pruned SVHN CNN (C1) and FINN's TFC (T1).

Where the model is weak: it does not model Vivado HLS's resource sharing decisions beyond the
rules above, FSM/control logic, the AXI wrappers, or the softmax block (qnet graphs end at the
logits); binary (XNOR-popcount) layers are over-estimated (popcount trees are narrower than
``acc_type`` adders); BRAM counts for weights ignore partitioning by hls4ml's array pragmas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qnet.errors import ConfigError
from qnet.hw.boards import Board
from qnet.hw.cost_common import LayerEstimate, _bit_length, _csd_nonzeros, _odd_part, _with
from qnet.hw.graph import (
    AvgPool,
    Conv,
    Dense,
    Flatten,
    HwGraph,
    Layer,
    MaxPool,
    MultiThreshold,
)
from qnet.hw.options import BuildOptions, matrix_size, valid_reuse_factors

__all__ = ["ESTIMATORS", "register_estimator", "hls_rows"]

# ---- model constants (fitted to J1/J2/C1 where stated; otherwise physical) ----------------
#: HLS estimate LUTs per adder bit (1 LUT/bit on the carry chain; HLS reports ~1.3 in J1).
LUT_PER_ADDER_BIT = 1.25
#: Fraction of adder-tree bits that HLS registers at 200 MHz (J1: 49k FF for 68k adder bits).
FF_PER_ADDER_BIT = 0.65
#: Adder delay used to chain adder-tree levels within one clock cycle, ns.
T_ADD_NS = 1.0
#: FIFOs at least this deep are BRAM; shallower ones SRL32 shift registers.
FIFO_BRAM_MIN_DEPTH = 64
#: Narrow-multiplication rule of Vivado HLS (LUT instead of DSP).
NARROW_OPERAND_BITS = 4
NARROW_PRODUCT_BITS = 10
#: BRAM18 aspect ratios (depth, width).
_BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


# ----------------------------------------------------------------------------- context
@dataclass(frozen=True)
class _Ctx:
    graph: HwGraph
    board: Board
    io_type: str
    reuse_factor: int
    strategy: str
    clock_mhz: float
    per_layer_reuse: tuple[tuple[str, int], ...] = ()

    def reuse_for(self, layer: Layer) -> int:
        return dict(self.per_layer_reuse).get(layer.name, self.reuse_factor)

    @property
    def period_ns(self) -> float:
        return 1000.0 / self.clock_mhz

    @property
    def stream(self) -> bool:
        return self.io_type == "io_stream"

    def in_layer(self, layer: Layer, index: int = 0) -> Layer:
        return self.graph[layer.inputs[index]]


Estimator = Callable[[Layer, _Ctx], LayerEstimate]
#: layer kind -> estimator function (explicit registry; duplicates refused)
ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(kind: str) -> Callable[[Estimator], Estimator]:
    """Decorator registering the estimator of one layer kind (duplicates are refused)."""

    def deco(fn: Estimator) -> Estimator:
        if kind in ESTIMATORS:
            raise ValueError(f"an estimator for layer kind {kind!r} is already registered")
        ESTIMATORS[kind] = fn
        return fn

    return deco


# ----------------------------------------------------------------------------- helpers
def _beats(shape: tuple[int, ...]) -> int:
    """Stream beats of a channels-first tensor: its pixel count (1 for a vector)."""
    return int(np.prod(shape[1:])) if len(shape) > 1 else 1


def _stream_channels(ctx: _Ctx, layer: Layer) -> int:
    """Elements per stream beat of a layer's output (Flatten keeps its input's packing)."""
    if isinstance(layer, Flatten):
        return _stream_channels(ctx, ctx.in_layer(layer))
    return int(layer.out_shape[0]) if len(layer.out_shape) > 1 else int(np.prod(layer.out_shape))


def _stream_beats(ctx: _Ctx, layer: Layer) -> int:
    if isinstance(layer, Flatten):
        return _stream_beats(ctx, ctx.in_layer(layer))
    return _beats(layer.out_shape)


def _bram18(depth: int, width: int) -> int:
    """18-Kbit blocks for a ``depth`` x ``width`` memory in the best aspect ratio."""
    if depth <= 0 or width <= 0:
        return 0
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _BRAM18_SHAPES)


def _dsp_per_mult(a: int, b: int, board: Board) -> int:
    fam = board.family_info
    big_op, small_op = max(fam.dsp_a_bits, fam.dsp_b_bits), min(fam.dsp_a_bits, fam.dsp_b_bits)
    hi, lo = max(a, b), min(a, b)
    if hi <= big_op and lo <= small_op:
        return 1
    return math.ceil(hi / (big_op - 1)) * math.ceil(lo / (small_op - 1))


def _is_narrow(a: int, b: int) -> bool:
    return min(a, b) <= NARROW_OPERAND_BITS or a + b <= NARROW_PRODUCT_BITS


def _finn_lut_mult(a: int, b: int) -> int:
    return (2 * math.ceil((a + b) / 6) - 1) * (a + b)


def _mux_luts_per_bit(reuse: int) -> float:
    return 0.0 if reuse <= 1 else max(0.5, (reuse - 1) / 3)


# ----------------------------------------------------------------------------- MAC layers
def _const_products(
    flat: np.ndarray, a_bits: int, board: Board
) -> tuple[int, int, int, int, float]:
    """Products of an ``a_bits`` operand with constant weights ``flat`` (reuse 1, Latency).

    Returns ``(free, LUT multipliers, DSP multipliers, DSP slices, multiplier LUTs)``: zero
    and power-of-two weights are free, narrow products are CSD shift-adds in LUTs, the
    others DSP slices (module docstring, "How a product maps").
    """
    lut_scale = 6 / board.family_info.lut_inputs  # general logic on LUT4 families
    nonzero = flat != 0
    odd = _odd_part(flat)
    pow2 = nonzero & (odd == 1)
    eff = _bit_length(odd) + 1
    needs = nonzero & ~pow2
    narrow = needs & (
        (eff <= NARROW_OPERAND_BITS)
        | (a_bits <= NARROW_OPERAND_BITS)
        | (eff + a_bits <= NARROW_PRODUCT_BITS)
    )
    dsp_w = needs & ~narrow
    n_free = int(np.count_nonzero(~needs))
    n_lut = int(np.count_nonzero(narrow))
    n_dsp = int(np.count_nonzero(dsp_w))
    # DSP count: group by effective width (few distinct values)
    dsp = 0
    for e, cnt in zip(*np.unique(eff[dsp_w], return_counts=True), strict=True):
        dsp += _dsp_per_mult(a_bits, int(e), board) * int(cnt)
    csd = _csd_nonzeros(flat[narrow])
    mult_lut = float(np.sum((csd - 1) * (a_bits + eff[narrow]))) * lut_scale
    return n_free, n_lut, n_dsp, dsp, mult_lut


def _mac_layer(
    layer: Dense | Conv, ctx: _Ctx, matrix: tuple[int, int] | None = None
) -> LayerEstimate:
    """``matrix``: the (n_in, n_out) hls4ml checks the reuse factor against, if not the
    weight matrix's (a depthwise convolution: its plain equivalent's)."""
    weight = layer.weight
    n_out = int(weight.shape[0])
    w2 = weight.reshape(n_out, -1)  # (n_out, n_in) in the im2col view
    n_in = int(w2.shape[1])
    positions = int(np.prod(layer.out_shape[1:])) if isinstance(layer, Conv) else 1
    reuse = ctx.reuse_for(layer)
    v_in, v_out = matrix or (n_in, n_out)
    if (v_in * v_out) % reuse != 0 or reuse not in _valid_cached(v_in, v_out):
        valid = sorted(_valid_cached(v_in, v_out))
        shown = ", ".join(map(str, valid[:20])) + (" ..." if len(valid) > 20 else "")
        raise ConfigError(
            f"reuse factor {reuse} is not valid for layer {layer.name!r} "
            f"({v_in} inputs x {v_out} outputs = {v_in * v_out} products); hls4ml accepts: {shown}"
        )
    in_type = ctx.graph.in_type(layer)
    a_bits = in_type.width
    w_bits = layer.weight_type.width
    acc_bits = layer.acc_type.width
    out_bits = layer.out_type.width
    has_bias = layer.bias is not None
    lut_scale = 6 / ctx.board.family_info.lut_inputs  # general logic on LUT4 families

    mults_per_pos = n_in * n_out
    if reuse == 1 and ctx.strategy == "Latency":
        # constant weights: per-weight mapping
        n_free, n_lut, n_dsp, dsp, mult_lut = _const_products(w2.ravel(), a_bits, ctx.board)
        # adders: per output, (nonzero terms - 1 + bias)
        terms = np.count_nonzero(w2, axis=1)
        n_adders = int(np.sum(np.maximum(terms - 1 + int(has_bias), 0)))
        adder_bits = n_adders * acc_bits
        mux_lut = 0.0
        weight_bram = 0
        max_terms = int(terms.max()) if terms.size else 0
        mult_instances = n_dsp + n_lut
        product_regs = 0
    else:
        lanes = mults_per_pos // reuse
        narrow_all = _is_narrow(a_bits, w_bits)
        n_dsp = 0 if narrow_all else lanes
        n_lut = lanes if narrow_all else 0
        n_free = 0
        dsp = n_dsp * _dsp_per_mult(a_bits, w_bits, ctx.board)
        mult_lut = n_lut * _finn_lut_mult(a_bits, w_bits) * lut_scale
        if ctx.strategy == "Latency":
            n_adders = n_out * max(n_in - 1 + int(has_bias), 0)
            mux_lut = (
                lanes
                * (a_bits * _mux_luts_per_bit(min(reuse, n_in)) + w_bits * _mux_luts_per_bit(reuse))
                * lut_scale
            )
            weight_bram = 0
        else:  # Resource: lanes multiply-accumulate into n_out accumulators, weights in BRAM
            n_adders = lanes + n_out * int(has_bias)
            mux_lut = lanes * a_bits * _mux_luts_per_bit(min(reuse, n_in)) * lut_scale
            weight_bram = _bram18(reuse, lanes * w_bits)
        adder_bits = n_adders * acc_bits
        max_terms = n_in + int(has_bias)
        mult_instances = lanes
        product_regs = 0

    lut = LUT_PER_ADDER_BIT * adder_bits + mult_lut + mux_lut + n_out * out_bits * 0.5
    ff = FF_PER_ADDER_BIT * adder_bits + product_regs + n_out * out_bits
    bram = weight_bram

    # latency / II
    has_mult = mult_instances > 0
    tree = (
        math.ceil(math.log2(max(max_terms, 1)) * T_ADD_NS / ctx.period_ns) if max_terms > 1 else 0
    )
    depth = (reuse - 1) + int(has_mult) + max(tree, 1)
    if ctx.stream:
        if isinstance(layer, Conv):
            beats = _beats(ctx.graph.in_shape(layer))
            # line buffer: (k-1) rows of the input in SRLs, window registers in FFs
            k = layer.kernel
            in_shape = ctx.graph.in_shape(layer)
            row = int(np.prod(in_shape[2:])) if layer.dims == 2 else 1
            line_bits = (k[0] - 1) * row * layer.in_channels * a_bits
            lut += line_bits / 32 * lut_scale
            ff += n_in * a_bits
        else:
            beats = _stream_beats(ctx, ctx.in_layer(layer))
        ii = beats * reuse
        latency = depth
    else:
        ii = positions * reuse
        latency = depth + (positions - 1) * reuse

    mults_total = mults_per_pos * positions
    return LayerEstimate(
        name=layer.name,
        kind=layer.kind,
        mults=int(np.count_nonzero(w2)) * positions
        if reuse == 1 and ctx.strategy == "Latency"
        else mults_total,
        dsp_mults=n_dsp,
        lut_mults=n_lut,
        free_mults=n_free,
        lut=round(lut),
        ff=round(ff),
        dsp=dsp,
        bram_18k=bram,
        latency_cycles=latency,
        ii_cycles=ii,
    )


_VALID_CACHE: dict[tuple[int, int], frozenset[int]] = {}


def _valid_cached(n_in: int, n_out: int) -> frozenset[int]:
    key = (n_in, n_out)
    if key not in _VALID_CACHE:
        _VALID_CACHE[key] = frozenset(valid_reuse_factors(n_in, n_out))
    return _VALID_CACHE[key]


@register_estimator("dense")
def _dense(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    assert isinstance(layer, Dense)
    return _mac_layer(layer, ctx)


@register_estimator("conv")
def _conv(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    assert isinstance(layer, Conv)
    # as the hls4ml export writes it: dilation as zero taps, depthwise as DepthwiseConv (one
    # product per tap and channel), other groups as the plain equivalent (block-diagonal;
    # zero weights are free products at reuse 1 with the Latency strategy, lanes otherwise)
    conv = layer.undilated()
    if conv.is_depthwise:
        return _mac_layer(conv, ctx, matrix=matrix_size(conv))
    return _mac_layer(conv.dense_equivalent(), ctx)


# ----------------------------------------------------------------------------- element-wise
def _parallel_elems(ctx: _Ctx, layer: Layer) -> int:
    """Elements processed per cycle: all of them (io_parallel) or one beat (io_stream)."""
    if ctx.stream:
        return _stream_channels(ctx, layer)
    return int(np.prod(layer.out_shape))


def _elementwise(layer: Layer, ctx: _Ctx, lut_per_bit: float, note: str = "") -> LayerEstimate:
    n = _parallel_elems(ctx, layer)
    bits = layer.out_type.width
    lut_scale = 6 / ctx.board.family_info.lut_inputs
    beats = _stream_beats(ctx, layer) if ctx.stream else 1
    return LayerEstimate(
        name=layer.name,
        kind=layer.kind,
        lut=round(n * bits * lut_per_bit * lut_scale),
        ff=n * bits,
        latency_cycles=1,
        ii_cycles=beats,
        note=note,
    )


@register_estimator("input")
def _input(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    return LayerEstimate(name=layer.name, kind=layer.kind, ii_cycles=1, note="input port")


@register_estimator("flatten")
def _flatten(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    return LayerEstimate(name=layer.name, kind=layer.kind, note="wiring")


@register_estimator("concat")
def _concat(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    # io_parallel: wiring (the inputs hold values of the output type: no cast logic);
    # io_stream: hls4ml copies every beat of each input stream into the output stream
    if ctx.stream:
        return _elementwise(layer, ctx, 0.0, "stream copy")
    return LayerEstimate(name=layer.name, kind=layer.kind, note="wiring")


@register_estimator("relu")
def _relu(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    # sign test + mux to zero + the cast (a mux per output bit)
    return _elementwise(layer, ctx, 0.5)


@register_estimator("quant")
def _quant(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    # rounding increment (carry chain) + saturation mux per output bit
    return _elementwise(layer, ctx, 1.5)


@register_estimator("add")
def _add(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    return _elementwise(layer, ctx, 1.5)


@register_estimator("multithreshold")
def _multithreshold(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    assert isinstance(layer, MultiThreshold)
    n = _parallel_elems(ctx, layer)
    in_bits = ctx.graph.in_type(layer).width
    n_thr = int(layer.thresholds.shape[1])
    lut_scale = 6 / ctx.board.family_info.lut_inputs
    # FINN thresholding: one comparator (carry chain, ~in_bits/2 LUT6) per threshold, plus an
    # adder tree counting the results [FINN Thresholding_Batch.lut_estimation]
    lut = n * (n_thr * math.ceil(in_bits / 2) + n_thr) * lut_scale
    beats = _stream_beats(ctx, layer) if ctx.stream else 1
    return LayerEstimate(
        name=layer.name,
        kind=layer.kind,
        lut=round(lut),
        ff=n * layer.out_type.width,
        latency_cycles=1 + math.ceil(math.log2(max(n_thr, 1) + 1) * T_ADD_NS / ctx.period_ns),
        ii_cycles=beats,
    )


def _pool(layer: MaxPool | AvgPool, ctx: _Ctx, lut_per_bit: float) -> LayerEstimate:
    window = int(np.prod(layer.kernel))
    bits = max(ctx.graph.in_type(layer).width, layer.out_type.width)
    lut_scale = 6 / ctx.board.family_info.lut_inputs
    in_shape = ctx.graph.in_shape(layer)
    if ctx.stream:
        n = int(layer.out_shape[0])
        ii = _beats(in_shape)
        row = int(np.prod(in_shape[2:])) if len(in_shape) > 2 else 1
        extra_lut = (layer.kernel[0] - 1) * row * n * bits / 32
    else:
        n = int(np.prod(layer.out_shape))
        ii = 1
        extra_lut = 0.0
    lut = n * (window - 1) * bits * lut_per_bit * lut_scale + extra_lut * lut_scale
    stages = math.ceil(math.log2(window)) if window > 1 else 0
    return LayerEstimate(
        name=layer.name,
        kind=layer.kind,
        lut=round(lut),
        ff=n * layer.out_type.width,
        latency_cycles=1 + math.ceil(stages * T_ADD_NS / ctx.period_ns),
        ii_cycles=ii,
    )


@register_estimator("maxpool")
def _maxpool(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    assert isinstance(layer, MaxPool)
    # comparator (carry chain) + 2:1 mux per bit for each of window-1 comparisons
    return _pool(layer, ctx, 1.5)


@register_estimator("avgpool")
def _avgpool(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    assert isinstance(layer, AvgPool)
    return _pool(layer, ctx, 1.0)


def _fifo(ctx: _Ctx, layer: Layer) -> tuple[int, int]:
    """(BRAM_18K, LUT) of the io_stream FIFO carrying ``layer``'s output."""
    if isinstance(layer, Flatten):
        return 0, 0
    depth = _stream_beats(ctx, layer)
    width = _stream_channels(ctx, layer) * layer.out_type.width
    if depth >= FIFO_BRAM_MIN_DEPTH:
        return _bram18(depth, width), 0
    return 0, width * math.ceil(depth / 32)


def hls_rows(graph: HwGraph, options: BuildOptions) -> tuple[list[LayerEstimate], list[str]]:
    """Per-layer rows and warnings of the hls4ml flow."""
    options.check_layer_names({layer.name for layer in graph.layers})
    ctx = _Ctx(
        graph,
        options.board_spec,
        options.io_type,
        options.default_reuse_factor,
        options.strategy,
        options.frequency_mhz,
        tuple(options.per_layer_reuse.items()),
    )
    rows: list[LayerEstimate] = []
    warnings: list[str] = []
    for layer in graph.layers:
        fn = ESTIMATORS.get(layer.kind)
        if fn is None:
            msg = f"no estimate for layer {layer.name!r} of kind {layer.kind!r}"
            warnings.append(msg + " (counted as zero)")
            rows.append(LayerEstimate(name=layer.name, kind=layer.kind, note=msg))
            continue
        row = fn(layer, ctx)
        if ctx.stream and not isinstance(layer, Flatten):
            fifo_bram, fifo_lut = _fifo(ctx, layer)
            if fifo_bram or fifo_lut:
                row = _with(row, bram_18k=row.bram_18k + fifo_bram, lut=row.lut + fifo_lut)
        rows.append(row)
    return rows, warnings
