"""Analytic resource and latency estimate of an :class:`~qnet.hw.graph.HwGraph` on a board.

Two flows: ``flow="hls"`` (default; hls4ml / Vivado HLS, below) and ``flow="rtl"`` (the open
da4ml Verilog flow synthesised by yosys; section "RTL flow").

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
only accepts ``R`` for which ``_validate_reuse_factor`` holds (see :func:`valid_reuse_factors`).

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
4:1 LUT6 muxes; 2:1 muxes pack two bits per LUT6_2).

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

RTL flow (``flow="rtl"``)
------------------------
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
(0.92, 0, 0.61), ECP5 LUT4 + CCU2C (0.32, 0, 0.37). Xilinx needs ~0.5 LUT per counted adder
bit (yosys packs the adder's XOR and the operand's shifted-in constant bits into CARRY4, and
da4ml shares more than the per-input rule counts); iCE40 ~1 LUT4 per bit (the SB_CARRY does
not absorb the sum XOR); ECP5's CCU2C holds two full adder bits, so most adder bits cost no
LUT4 at all. The Lattice fits have no separate logic term (it came out negative; the adder
term absorbs it). FF = 0 for combinational logic; with ``pipeline_stages = N`` the model adds
``N * (widest tensor in bits)`` FF (not calibrated). Latency is ``N`` cycles, II 1.

Calibration: yosys 0.23 (``synth_xilinx -family xc7`` / ``synth_ice40`` / ``synth_ecp5``
through :func:`qnet.export.opensynth.run_open_flow`) on the graphs of tests/export/hw_graphs.py
(LUT, estimate/yosys): MLP 8-8-10 4b artix7 904 (1.01), ice40 1,456 (0.98), ecp5 518 (0.96);
MLP 64-32-16-10 4b artix7 19,480 (1.00); ConvNet2d (2,4) 4b artix7 12,668 (1.00), ice40
18,880 (1.02), ecp5 6,374 (1.05). Held out: two more MLP 8-8-10 seeds within 0.85-1.01;
a 2-bit MLP 16-16-10 is over-estimated 1.26x (artix7, ecp5) to 1.45x (ice40) -- with 2-bit
weights da4ml shares sums of inputs across outputs, which the per-input rule does not see.
CARRY is within 0.86-1.28x on the 4-bit designs (1.4-1.7x on the 2-bit one). The hls model
is off by 0.3x-3.5x on the same designs. Tests: tests/hw/test_estimate_rtl.py.

Where the model is weak: it does not model Vivado HLS's resource sharing decisions beyond the
rules above, FSM/control logic, the AXI wrappers, or the softmax block (qnet graphs end at the
logits); binary (XNOR-popcount) layers are over-estimated (popcount trees are narrower than
``acc_type`` adders); BRAM counts for weights ignore partitioning by hls4ml's array pragmas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from qnet.errors import ConfigError
from qnet.hw.boards import RESOURCE_KEYS, Board, load_board, resource_dict
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

__all__ = [
    "Estimate",
    "LayerEstimate",
    "estimate",
    "valid_reuse_factors",
    "register_estimator",
    "ESTIMATORS",
    "IO_TYPES",
    "STRATEGIES",
    "RESOURCE_KEYS",
    "FLOWS",
    "RTL_FAMILY_MODELS",
    "RTL_FAMILY_OF",
    "RtlFamilyModel",
    "rtl_family_model",
]

IO_TYPES = ("io_parallel", "io_stream")
STRATEGIES = ("Latency", "Resource")
FLOWS = ("hls", "rtl")

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


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class LayerEstimate:
    """Estimated cost of one layer.

    ``mults`` counts multiplications per inference; ``dsp_mults`` / ``lut_mults`` /
    ``free_mults`` count multiplier instances in DSPs, in LUTs, and products that need no
    multiplier (zero or power-of-two weights).
    """

    name: str
    kind: str
    mults: int = 0
    dsp_mults: int = 0
    lut_mults: int = 0
    free_mults: int = 0
    lut: int = 0
    ff: int = 0
    dsp: int = 0
    bram_18k: int = 0
    uram: int = 0
    latency_cycles: int = 0
    ii_cycles: int = 1
    note: str = ""
    carry: int = 0

    def resources(self) -> dict[str, int]:
        """``{"LUT": .., "FF": .., "DSP": .., "BRAM_18K": .., "URAM": ..}``."""
        return resource_dict(self)


@dataclass(frozen=True)
class Estimate:
    """Whole-design estimate on one board (totals, per-layer rows, utilisation, warnings)."""

    board: str
    part: str
    clock_mhz: float
    io_type: str
    reuse_factor: int | dict[str, int]
    strategy: str
    layers: tuple[LayerEstimate, ...]
    mults: int
    dsp_mults: int
    lut_mults: int
    free_mults: int
    lut: int
    ff: int
    dsp: int
    bram_18k: int
    uram: int
    latency_cycles: int
    ii_cycles: int
    latency_us: float
    throughput_per_s: float
    available: dict[str, int] = field(default_factory=dict)
    utilisation: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    flow: str = "hls"
    carry: int = 0
    pipeline_stages: int = 0

    def resources(self) -> dict[str, int]:
        """Totals keyed ``LUT``, ``FF``, ``DSP``, ``BRAM_18K``, ``URAM``."""
        return resource_dict(self)

    @property
    def fits(self) -> bool:
        """Whether every resource is within the board's capacity."""
        return all(v <= 100.0 for v in self.utilisation.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (layers as a list of dicts)."""
        out = asdict(self)
        out["layers"] = [asdict(layer) for layer in self.layers]
        out["warnings"] = list(self.warnings)
        out["fits"] = self.fits
        return out


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


def _csd_nonzeros(values: np.ndarray) -> np.ndarray:
    """Nonzero digits of the canonical signed-digit form of each |value| (vectorised)."""
    x = np.abs(values.astype(np.int64))
    count = np.zeros_like(x)
    while np.any(x):
        odd = (x & 1) == 1
        # digit +1 when x % 4 == 1, -1 when x % 4 == 3
        digit = np.where(odd, 2 - (x & 3), 0)
        count += odd
        x = (x - digit) >> 1
    return count


def _bit_length(values: np.ndarray) -> np.ndarray:
    x = np.abs(values.astype(np.int64))
    out = np.zeros_like(x)
    nz = x > 0
    out[nz] = np.floor(np.log2(x[nz])).astype(np.int64) + 1
    return out


def _odd_part(values: np.ndarray) -> np.ndarray:
    x = np.abs(values.astype(np.int64))
    nz = x > 0
    low = np.zeros_like(x)
    low[nz] = x[nz] & -x[nz]
    out = np.zeros_like(x)
    out[nz] = x[nz] // low[nz]
    return out


def _mux_luts_per_bit(reuse: int) -> float:
    return 0.0 if reuse <= 1 else max(0.5, (reuse - 1) / 3)


def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """Reuse factors hls4ml accepts for an ``n_in`` x ``n_out`` matrix-vector product.

    Mirrors ``_validate_reuse_factor`` of hls4ml 1.3 (``backends/fpga/fpga_backend.py``).
    """
    valid = []
    for rf in range(1, n_in * n_out + 1):
        multfactor = min(n_in, rf)
        multiplier_limit = math.ceil((n_in * n_out) / multfactor)
        ok = (multiplier_limit % n_out == 0) or (rf >= n_in)
        ok = ok and ((rf % n_in == 0) or (rf < n_in))
        ok = ok and ((n_in * n_out) % rf == 0)
        if ok:
            valid.append(rf)
    return valid


# ----------------------------------------------------------------------------- MAC layers
def _mac_layer(layer: Dense | Conv, ctx: _Ctx) -> LayerEstimate:
    weight = layer.weight
    n_out = int(weight.shape[0])
    w2 = weight.reshape(n_out, -1)  # (n_out, n_in) in the im2col view
    n_in = int(w2.shape[1])
    positions = int(np.prod(layer.out_shape[1:])) if isinstance(layer, Conv) else 1
    reuse = ctx.reuse_for(layer)
    if (n_in * n_out) % reuse != 0 or reuse not in _valid_cached(n_in, n_out):
        valid = sorted(_valid_cached(n_in, n_out))
        shown = ", ".join(map(str, valid[:20])) + (" ..." if len(valid) > 20 else "")
        raise ConfigError(
            f"reuse factor {reuse} is not valid for layer {layer.name!r} "
            f"({n_in} inputs x {n_out} outputs = {n_in * n_out} products); hls4ml accepts: {shown}"
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
        flat = w2.ravel()
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
            dsp += _dsp_per_mult(a_bits, int(e), ctx.board) * int(cnt)
        csd = _csd_nonzeros(flat[narrow])
        mult_lut = float(np.sum((csd - 1) * (a_bits + eff[narrow]))) * lut_scale
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
            mux_lut = lanes * (a_bits + w_bits) * _mux_luts_per_bit(reuse) * lut_scale
            weight_bram = 0
        else:  # Resource: lanes multiply-accumulate into n_out accumulators, weights in BRAM
            n_adders = lanes + n_out * int(has_bias)
            mux_lut = lanes * a_bits * _mux_luts_per_bit(reuse) * lut_scale
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
    return _mac_layer(layer, ctx)


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


# ----------------------------------------------------------------------------- RTL flow
@dataclass(frozen=True)
class RtlFamilyModel:
    """Per-family constants of the RTL-flow (da4ml shift-add) model, fitted to yosys 0.23.

    ``lut_per_adder_bit`` and ``lut_per_logic_bit`` turn the counted adder bits and
    cast/ReLU/max-pool bits into the family's LUTs; ``carry_per_adder_bit`` turns adder bits
    into carry cells (CARRY4 = 4 bits, SB_CARRY = 1 bit, CCU2C = 2 bits, times the fraction
    of adder bits yosys keeps on a chain).
    """

    name: str
    lut_per_adder_bit: float
    lut_per_logic_bit: float
    carry_per_adder_bit: float


#: Fitted to the yosys figures in the module docstring (tests/hw/test_estimate_rtl.py).
RTL_FAMILY_MODELS: dict[str, RtlFamilyModel] = {
    "xilinx": RtlFamilyModel("xilinx", 0.51, 0.70, 0.19),
    "ice40": RtlFamilyModel("ice40", 0.92, 0.0, 0.61),
    "ecp5": RtlFamilyModel("ecp5", 0.32, 0.0, 0.37),
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


def _rtl_mac_bits(layer: Dense | Conv, graph: HwGraph) -> tuple[int, float]:
    """(adders, adder bits) of one constant matrix-vector product as da4ml builds it.

    Per input, the distinct odd parts ``u > 1`` of its weights are built once and shared by
    every output (``nz_csd(u) - 1`` adders of ``a + bit_length(u)`` bits); per output, the
    ``terms`` nonzero products are summed by ``terms - 1`` adders of
    ``min(acc_width, a + w_eff + ceil(log2 terms) / 2)`` bits (the average width of a
    balanced tree whose lower levels are narrower).
    """
    src = graph[layer.inputs[0]]
    a = src.out_type.width
    w2 = layer.weight.reshape(layer.weight.shape[0], -1).astype(np.int64)
    odd = _odd_part(w2)
    eff = _bit_length(w2)
    acc_w = layer.acc_type.width
    adders, bits = 0, 0.0
    for mask, count in _tap_masks(layer, tuple(src.out_shape)):
        sub_odd, sub_eff = odd[:, mask], eff[:, mask]
        for col in range(sub_odd.shape[1]):
            u = np.unique(sub_odd[:, col])
            u = u[u > 1]
            if u.size:
                c = _csd_nonzeros(u) - 1
                adders += count * int(c.sum())
                bits += count * float((c * (a + _bit_length(u))).sum())
        terms = (sub_odd > 0).sum(axis=1)
        n_acc = np.clip(terms - 1, 0, None)
        growth = np.ceil(np.log2(np.maximum(terms, 1))) / 2
        width = np.minimum(acc_w, a + sub_eff.max(axis=1, initial=0) + growth)
        adders += count * int(n_acc.sum())
        bits += count * float((n_acc * width).sum())
    return adders, bits


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


def _rtl_rows(graph: HwGraph, family: RtlFamilyModel) -> tuple[list[LayerEstimate], list[str]]:
    rows: list[LayerEstimate] = []
    warnings: list[str] = []
    for layer in graph.layers:
        if layer.kind in ("input", "flatten"):
            rows.append(LayerEstimate(name=layer.name, kind=layer.kind, note="wiring"))
            continue
        if isinstance(layer, Dense | Conv):
            adders, add_bits = _rtl_mac_bits(layer, graph)
            w2 = layer.weight.reshape(layer.weight.shape[0], -1)
            positions = int(np.prod(layer.out_shape[1:])) if isinstance(layer, Conv) else 1
            mults = int(w2.size) * positions
            free = int(np.count_nonzero(_csd_nonzeros(w2) <= 1)) * positions
            note = f"{adders:,} shift-add adders"
        elif layer.kind in ("relu", "quant", "add", "maxpool", "avgpool", "multithreshold"):
            add_bits, mults, free, note = 0.0, 0, 0, ""
        else:
            msg = f"no rtl estimate for layer {layer.name!r} of kind {layer.kind!r}"
            warnings.append(msg + " (counted as zero)")
            rows.append(LayerEstimate(name=layer.name, kind=layer.kind, note=msg))
            continue
        logic = _rtl_logic_bits(layer, graph)
        rows.append(
            LayerEstimate(
                name=layer.name,
                kind=layer.kind,
                mults=mults,
                lut_mults=mults - free,
                free_mults=free,
                lut=round(family.lut_per_adder_bit * add_bits + family.lut_per_logic_bit * logic),
                carry=round(family.carry_per_adder_bit * add_bits),
                latency_cycles=0,
                ii_cycles=1,
                note=note,
            )
        )
    return rows, warnings


# ----------------------------------------------------------------------------- driver
def _fifo(ctx: _Ctx, layer: Layer) -> tuple[int, int]:
    """(BRAM_18K, LUT) of the io_stream FIFO carrying ``layer``'s output."""
    if isinstance(layer, Flatten):
        return 0, 0
    depth = _stream_beats(ctx, layer)
    width = _stream_channels(ctx, layer) * layer.out_type.width
    if depth >= FIFO_BRAM_MIN_DEPTH:
        return _bram18(depth, width), 0
    return 0, width * math.ceil(depth / 32)


def estimate(
    graph: HwGraph,
    board: Board | str,
    io_type: str = "io_parallel",
    reuse_factor: int | Mapping[str, int] = 1,
    strategy: str = "Latency",
    clock_mhz: float | None = None,
    flow: str = "hls",
    pipeline_stages: int = 0,
) -> Estimate:
    """Estimate resources, latency and throughput of ``graph`` (hls4ml or da4ml RTL flow).

    Parameters
    ----------
    graph : HwGraph
        The hardware graph (from :func:`qnet.lower` or :meth:`HwGraph.load`).
    board : Board or str
        Target board (a :class:`Board`, a shipped board name, or a board ``.toml`` path).
    io_type : {"io_parallel", "io_stream"}
        hls4ml IO type.
    reuse_factor : int or mapping of str to int
        Global hls4ml reuse factor (must be valid for every dense/conv layer), or per-layer
        factors ``{layer_name: R}`` (hls4ml's per-layer ``ReuseFactor``; the key ``"default"``
        sets the others, 1 when absent).
    strategy : {"Latency", "Resource"}
        hls4ml strategy (case-insensitive).
    clock_mhz : float, optional
        Clock; defaults to the board's ``default_clock_mhz``.
    flow : {"hls", "rtl"}
        ``"hls"``: the hls4ml / Vivado HLS model. ``"rtl"``: the open RTL flow
        (:func:`qnet.export.to_verilog`, da4ml shift-add logic synthesised by yosys); it is
        fully parallel, so ``reuse_factor`` must be 1 and ``io_type`` / ``strategy`` are
        ignored.
    pipeline_stages : int
        RTL flow only: 0 for combinational logic, N > 0 for N register stages.

    Returns
    -------
    Estimate
        Per-layer rows and totals. Layers of an unknown kind get a row with a note and a
        warning instead of an error.

    Raises
    ------
    ConfigError
        Unknown io_type / strategy / flow, a non-positive clock or reuse factor, or a reuse
        factor that hls4ml would refuse for some layer (the message names the layer and valid
        values); for the rtl flow a reuse factor other than 1, a negative ``pipeline_stages``
        or a board family without an rtl model.
    """
    board = load_board(board)
    if flow not in FLOWS:
        raise ConfigError(f"flow {flow!r} is not supported; use one of {', '.join(FLOWS)}")
    if flow == "rtl":
        return _estimate_rtl(graph, board, reuse_factor, clock_mhz, pipeline_stages)
    if pipeline_stages != 0:
        raise ConfigError("pipeline_stages applies to the rtl flow only (flow='rtl')")
    if io_type not in IO_TYPES:
        raise ConfigError(f"io_type {io_type!r} is not supported; use one of {', '.join(IO_TYPES)}")
    strat = {s.lower(): s for s in STRATEGIES}.get(str(strategy).lower())
    if strat is None:
        raise ConfigError(
            f"strategy {strategy!r} is not supported; use one of {', '.join(STRATEGIES)}"
        )
    if isinstance(reuse_factor, Mapping):
        per_layer = {str(k): v for k, v in reuse_factor.items()}
        default = per_layer.pop("default", 1)
        names = {layer.name for layer in graph.layers}
        unknown = sorted(set(per_layer) - names)
        if unknown:
            raise ConfigError(f"reuse factor given for unknown layer(s) {', '.join(unknown)}")
    else:
        per_layer, default = {}, reuse_factor
    for key, value in [("default", default), *per_layer.items()]:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"reuse factor ({key}) must be a positive integer, got {value!r}")
    clock = float(clock_mhz if clock_mhz is not None else board.default_clock_mhz)
    if not clock > 0:
        raise ConfigError(f"clock must be > 0 MHz, got {clock_mhz!r}")
    ctx = _Ctx(
        graph,
        board,
        io_type,
        int(default),
        strat,
        clock,
        tuple((k, int(v)) for k, v in per_layer.items()),
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
    return _finish(rows, warnings, ctx, board, clock, per_layer, default)


def _finish(
    rows: list[LayerEstimate],
    warnings: list[str],
    ctx: _Ctx,
    board: Board,
    clock: float,
    per_layer: Mapping[str, int],
    default: int,
    flow: str = "hls",
    pipeline_stages: int = 0,
) -> Estimate:
    tot = {
        k: sum(getattr(r, k) for r in rows)
        for k in (
            "mults",
            "dsp_mults",
            "lut_mults",
            "free_mults",
            "lut",
            "ff",
            "dsp",
            "bram_18k",
            "uram",
        )
    }
    carry = sum(r.carry for r in rows)
    ii = max((r.ii_cycles for r in rows), default=1)
    if flow == "rtl":
        latency = pipeline_stages
    elif ctx.stream:
        latency = ii + sum(r.latency_cycles for r in rows)
    else:
        latency = sum(r.latency_cycles for r in rows)
    ii = max(ii, 1)
    available = board.resources.as_dict()
    used = {
        "LUT": tot["lut"],
        "FF": tot["ff"],
        "DSP": tot["dsp"],
        "BRAM_18K": tot["bram_18k"],
        "URAM": tot["uram"],
    }
    util: dict[str, float] = {}
    for key, value in used.items():
        cap = available[key]
        if cap == 0:
            util[key] = 0.0 if value == 0 else math.inf
        else:
            util[key] = 100.0 * value / cap
        if util[key] > 100.0:
            warnings.append(
                f"{key}: {value:,} needed, {cap:,} available on {board.name} ({util[key]:.0f}%)"
            )
    return Estimate(
        board=board.name,
        part=board.part,
        clock_mhz=clock,
        io_type=ctx.io_type,
        reuse_factor=int(default) if not per_layer else {"default": int(default), **per_layer},
        strategy=ctx.strategy,
        layers=tuple(rows),
        mults=tot["mults"],
        dsp_mults=tot["dsp_mults"],
        lut_mults=tot["lut_mults"],
        free_mults=tot["free_mults"],
        lut=tot["lut"],
        ff=tot["ff"],
        dsp=tot["dsp"],
        bram_18k=tot["bram_18k"],
        uram=tot["uram"],
        latency_cycles=int(latency),
        ii_cycles=int(ii),
        latency_us=max(latency, 1) / clock if flow == "rtl" else latency / clock,
        throughput_per_s=clock * 1e6 / ii,
        available=available,
        utilisation=util,
        warnings=tuple(warnings),
        flow=flow,
        carry=carry,
        pipeline_stages=pipeline_stages,
    )


def _estimate_rtl(
    graph: HwGraph,
    board: Board,
    reuse_factor: int | Mapping[str, int],
    clock_mhz: float | None,
    pipeline_stages: int,
) -> Estimate:
    """The rtl-flow branch of :func:`estimate` (board already loaded)."""
    if isinstance(reuse_factor, Mapping) or reuse_factor != 1:
        raise ConfigError(
            f"the rtl flow is fully parallel (da4ml shift-add logic): reuse factor must be 1, "
            f"got {reuse_factor!r}"
        )
    if isinstance(pipeline_stages, bool) or not isinstance(pipeline_stages, int | np.integer):
        raise ConfigError(f"pipeline_stages must be an integer >= 0, got {pipeline_stages!r}")
    if pipeline_stages < 0:
        raise ConfigError(f"pipeline_stages must be >= 0, got {pipeline_stages}")
    clock = float(clock_mhz if clock_mhz is not None else board.default_clock_mhz)
    if not clock > 0:
        raise ConfigError(f"clock must be > 0 MHz, got {clock_mhz!r}")
    family = rtl_family_model(board.family)
    rows, warnings = _rtl_rows(graph, family)
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
    ctx = _Ctx(graph, board, "io_parallel", 1, "Latency", clock)
    return _finish(rows, warnings, ctx, board, clock, {}, 1, "rtl", int(pipeline_stages))


def _with(row: LayerEstimate, **changes: Any) -> LayerEstimate:
    from dataclasses import replace

    return replace(row, **changes)
