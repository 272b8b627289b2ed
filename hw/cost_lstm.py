"""Cost of the quantised LSTM (:class:`qnet.hw.lstm.LSTM`) in both flows.

Both exports build the recurrence as ``T`` copies of one cell (``T`` = sequence length):
the Verilog export unrolls it explicitly (``qnet.export.verilog``, one traced cell per
step), and the hls4ml export's ``TimeLoop`` (``export/templates/nnet_qnet_lstm.h``) sits
under hls4ml's top-level ``#pragma HLS PIPELINE`` (``io_parallel``), which unrolls every loop
below it [UG902, "Function pipelining"]. One cell is:

- gate pre-activations: for each of the 4 gates, ``W_k x + U_k h + b_k`` -- constant-weight
  matrix-vector products (``hidden x input`` and ``hidden x hidden``) summed in the gate's
  exact ``acc_type``; the first step has ``h = 0``, so its ``U_k h`` costs nothing;
- 4 x hidden table lookups (sigmoid/tanh, ``2**gate_width`` entries) and hidden lookups of
  ``tanh(c)`` (``2**cell_width`` entries), each a ROM of its own (the lookups run in
  parallel);
- 3 x hidden variable x variable products (``f*c``, ``i*g``, ``o*tanh(c)``) and hidden
  cell-state adders, each result cast (round + saturate).

hls flow: the constant products follow the dense rule of :mod:`qnet.hw.cost_hls` (reuse 1,
Latency: free / CSD shift-add in LUTs / DSP), adders ``LUT_PER_ADDER_BIT`` per accumulator
bit, a ROM ``width * ceil(entries / 2**lut_inputs)`` LUTs, a variable product a DSP or (narrow)
FINN's LUT multiplier; latency ``T`` cells of (multiplier + adder tree + table + 3 product /
cast stages), II 1. The LSTM export supports ``io_parallel`` only and has no reuse factor,
so the estimate refuses ``io_stream`` as the export does and ignores the reuse factor.

rtl flow: the constant products are counted as for a dense layer in :mod:`qnet.hw.cost_rtl`
(shared odd parts per input, accumulation adders), a variable product as an ``a x b``
array of adder bits, the casts as logic bits, and the ROMs as above in LUTs.

Neither LSTM model is calibrated against a synthesis run (no tool in CI builds one); the
figures are the counts above, stated per layer in the row's ``note``.
"""

from __future__ import annotations

import math

import numpy as np

from qnet.errors import UnsupportedLayerError
from qnet.hw.boards import Board
from qnet.hw.cost_common import LayerEstimate, _bit_length, _csd_nonzeros, _odd_part
from qnet.hw.cost_hls import (
    FF_PER_ADDER_BIT,
    LUT_PER_ADDER_BIT,
    T_ADD_NS,
    _const_products,
    _Ctx,
    _dsp_per_mult,
    _finn_lut_mult,
    _is_narrow,
    register_estimator,
)
from qnet.hw.cost_rtl import RtlFamilyModel, register_rtl_estimator, rtl_row
from qnet.hw.graph import HwGraph, Layer
from qnet.hw.lstm import LSTM

__all__ = ["lstm_rom_luts"]


def _steps(layer: LSTM, graph: HwGraph) -> int:
    return int(graph.in_shape(layer)[0])


def lstm_rom_luts(layer: LSTM, board: Board) -> int:
    """LUTs of the cell's ROMs: one per lookup (4 x hidden gate tables, hidden tanh(c))."""
    per_lut = 1 << board.family_info.lut_inputs
    gate_entries = int(layer.gate_tables.shape[1])
    gate = sum(t.width * math.ceil(gate_entries / per_lut) for t in layer.act_types)
    tanh = layer.tanh_type.width * math.ceil(int(layer.tanh_table.shape[0]) / per_lut)
    return layer.hidden_size * (gate + tanh)


def _var_products(layer: LSTM) -> list[tuple[int, int]]:
    """Operand widths of the cell's variable x variable products (f*c, i*g, o*tanh(c))."""
    act = layer.act_types
    return [
        (act[1].width, layer.cell_type.width),
        (act[0].width, act[2].width),
        (act[3].width, layer.tanh_type.width),
    ]


@register_estimator("lstm")
def _hls_lstm(layer: Layer, ctx: _Ctx) -> LayerEstimate:
    assert isinstance(layer, LSTM)
    if ctx.io_type != "io_parallel":
        raise UnsupportedLayerError(
            f"layer {layer.name!r} (lstm): the LSTM export supports io_type='io_parallel' "
            f"only, so there is nothing to estimate for {ctx.io_type!r}"
        )
    steps = _steps(layer, ctx.graph)
    hid = layer.hidden_size
    x_bits, h_bits = ctx.graph.in_type(layer).width, layer.out_type.width
    lut_scale = 6 / ctx.board.family_info.lut_inputs
    free = n_lut = n_dsp = dsp = 0
    mult_lut = adder_bits = 0.0
    max_terms = 1
    for k in range(4):
        parts = [
            (layer.input_weight[k], x_bits, steps),
            (layer.hidden_weight[k], h_bits, steps - 1),
        ]
        for weight, a_bits, copies in parts:
            f, nl, nd, d, ml = _const_products(weight.ravel(), a_bits, ctx.board)
            free, n_lut, n_dsp, dsp = (
                free + copies * f,
                n_lut + copies * nl,
                n_dsp + copies * nd,
                dsp + copies * d,
            )
            mult_lut += copies * ml
        has_bias = int(layer.bias is not None)
        first = np.count_nonzero(layer.input_weight[k], axis=1)
        later = first + np.count_nonzero(layer.hidden_weight[k], axis=1)
        adders = (
            np.maximum(first - 1 + has_bias, 0).sum()
            + (steps - 1) * np.maximum(later - 1 + has_bias, 0).sum()
        )
        adder_bits += float(adders) * layer.acc_types[k].width
        max_terms = max(max_terms, int(later.max(initial=0)) + has_bias)
    var_dsp = var_lut = var_lut_mults = var_dsp_mults = 0
    for a, b in _var_products(layer):
        if _is_narrow(a, b):
            var_lut += steps * hid * _finn_lut_mult(a, b)
            var_lut_mults += steps * hid
        else:
            var_dsp += steps * hid * _dsp_per_mult(a, b, ctx.board)
            var_dsp_mults += steps * hid
    adder_bits += steps * hid * layer.cell_type.width  # c = f*c + i*g
    rom = steps * lstm_rom_luts(layer, ctx.board)
    cast_bits = steps * hid * (4 * layer.gate_types[0].width + 3 * layer.cell_type.width)
    lut = (
        LUT_PER_ADDER_BIT * adder_bits
        + mult_lut
        + var_lut * lut_scale
        + rom
        + 0.5 * cast_bits * lut_scale
    )
    ff = FF_PER_ADDER_BIT * adder_bits + steps * hid * (h_bits + layer.cell_type.width)
    tree = math.ceil(math.log2(max_terms) * T_ADD_NS / ctx.period_ns) if max_terms > 1 else 0
    cell_depth = 1 + max(tree, 1) + 1 + 3  # products, adder tree, table, f*c / i*g / o*tanh
    mults = steps * 4 * hid * layer.input_size + (steps - 1) * 4 * hid * hid + steps * 3 * hid
    return LayerEstimate(
        name=layer.name,
        kind=layer.kind,
        mults=mults,
        dsp_mults=n_dsp + var_dsp_mults,
        lut_mults=n_lut + var_lut_mults,
        free_mults=free,
        lut=round(lut),
        ff=round(ff),
        dsp=dsp + var_dsp,
        latency_cycles=steps * cell_depth,
        ii_cycles=1,
        note=f"{steps} unrolled cell(s); ROMs {rom:,} LUT; uncalibrated",
    )


def _rtl_const_bits(
    weight: np.ndarray, a: int, acc_w: int, extra_terms: np.ndarray
) -> tuple[float, float]:
    """(product bits, sum bits) of ``weight @ v`` (``a``-bit ``v``) as
    :func:`qnet.hw.cost_rtl` counts a dense layer: shared odd parts per input, then
    ``terms + extra_terms - 1`` adders per output."""
    odd = _odd_part(weight)
    bits = 0.0
    for col in range(odd.shape[1]):
        u = np.unique(odd[:, col])
        u = u[u > 1]
        if u.size:  # one adder per odd part, as qnet.hw.cost_rtl counts it
            bits += float((a + _bit_length(u)).sum())
    terms = (odd > 0).sum(axis=1) + extra_terms
    n_acc = np.clip(terms - 1, 0, None)
    growth = np.ceil(np.log2(np.maximum(terms, 1))) / 2
    width = np.minimum(acc_w, a + _bit_length(weight).max(axis=1, initial=0) + growth)
    return bits, float((n_acc * width).sum())


@register_rtl_estimator("lstm")
def _rtl_lstm(layer: Layer, graph: HwGraph, family: RtlFamilyModel, board: Board) -> LayerEstimate:
    assert isinstance(layer, LSTM)
    steps = _steps(layer, graph)
    hid = layer.hidden_size
    x_bits, h_bits = graph.in_type(layer).width, layer.out_type.width
    add_bits, sum_bits = 0.0, 0.0
    for k in range(4):
        acc_w = layer.acc_types[k].width
        bias = np.full(hid, int(layer.bias is not None))
        u_terms = (layer.hidden_weight[k] != 0).sum(axis=1)
        first = _rtl_const_bits(layer.input_weight[k], x_bits, acc_w, bias)
        later_x = _rtl_const_bits(layer.input_weight[k], x_bits, acc_w, bias + u_terms)
        later_h = _rtl_const_bits(layer.hidden_weight[k], h_bits, acc_w, np.zeros(hid, int))
        add_bits += first[0] + (steps - 1) * (later_x[0] + later_h[0])
        sum_bits += first[1] + (steps - 1) * (later_x[1] + later_h[1])
    add_bits += steps * hid * sum(a * b for a, b in _var_products(layer))
    sum_bits += steps * hid * layer.cell_type.width  # c = f*c + i*g
    logic = steps * hid * (4 * layer.gate_types[0].width + 3 * layer.cell_type.width + h_bits)
    rom = steps * lstm_rom_luts(layer, board)
    row = rtl_row(layer, family, add_bits, float(logic), note="", sum_bits=sum_bits)
    free = steps * int(np.count_nonzero(_csd_nonzeros(layer.input_weight) <= 1))
    free += (steps - 1) * int(np.count_nonzero(_csd_nonzeros(layer.hidden_weight) <= 1))
    mults = steps * layer.input_weight.size + (steps - 1) * layer.hidden_weight.size
    mults += steps * 3 * hid
    return LayerEstimate(
        name=layer.name,
        kind=layer.kind,
        mults=int(mults),
        lut_mults=int(mults) - free,
        free_mults=free,
        lut=row.lut + rom,
        carry=row.carry,
        latency_cycles=0,
        ii_cycles=1,
        note=f"{steps} unrolled cell(s); ROMs {rom:,} LUT; uncalibrated",
    )
