"""The quantised LSTM layer (``LSTM``) and its bit-accurate simulator.

One cell step, exactly as Brevitas' ``QuantLSTM`` computes it with fixed-point quantisers
everywhere (``brevitas/nn/quant_rnn.py``, ``_QuantLSTMCell.forward_iter``), gates in
Brevitas' order ``i, f, g, o`` (input, forget, cell, output)::

    acc_k  = W_k x_t + U_k h + b_k                exact, in acc_types[k]
    pre_k  = gate_types[k](acc_k)                  the gate_acc quantiser (round, saturate)
    act_k  = gate_tables[k][pre_k - min]           sigmoid (i, f, o) or tanh (g), quantised
    fc     = cell_type(act_f * c)                  Brevitas rounds three times:
    ig     = cell_type(act_i * act_g)              f*c, i*g and their sum, each by the
    c      = cell_type(fc + ig)                    cell-state quantiser
    h      = out_type(act_o * tanh_table[c - min]) the io quantiser

The activation functions are tables indexed by every mantissa of the narrow pre-activation
type (e.g. 256 entries for 8 bits). They are computed when lowering by calling Brevitas' own
quantiser proxies on every representable input, so they are exact by construction. ``h`` and
``c`` start at zero. Products of two narrow mantissas are exact integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from qnet.errors import FormatError
from qnet.hw.fixed import FixedType
from qnet.hw.graph import HwGraph
from qnet.hw.layers import Layer, _check_mantissas, _int_array, register_layer
from qnet.hw.sim_arith import _shift_left, matmul_exact
from qnet.hw.sim_layers import register_simulator

__all__ = ["LSTM", "GATES", "table_index"]

#: Gate order of the weight, bias and table arrays (Brevitas' order).
GATES = ("input", "forget", "cell", "output")


def table_index(mantissa: np.ndarray, t: FixedType) -> np.ndarray:
    """Index of ``mantissa`` (of type ``t``) in a table over every mantissa of ``t``.

    Tables hold one entry per mantissa from ``t.int_min`` to ``t.int_max``; in hardware the
    index is the mantissa's bits with the sign bit inverted.
    """
    return np.asarray(mantissa, dtype=np.int64) - t.int_min


def _z(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, np.int64)


@register_layer
@dataclass(frozen=True, eq=False)
class LSTM(Layer):
    """A single-direction, single-layer quantised LSTM over a batch-first sequence.

    The input is one sequence per sample, per-sample shape ``(T, input_size)``; the output
    is ``(T, hidden_size)`` when ``return_sequences`` else the last hidden state
    ``(hidden_size,)``. ``out_type`` is the type of the hidden state ``h``.

    Attributes
    ----------
    input_weight : ndarray, int64, (4, hidden_size, input_size)
        ``W`` mantissas per gate (i, f, g, o), of ``input_weight_types[k]``.
    hidden_weight : ndarray, int64, (4, hidden_size, hidden_size)
        ``U`` mantissas per gate, of ``hidden_weight_types[k]``.
    bias : ndarray, int64, (4, hidden_size) or None
        Bias mantissas per gate, of ``bias_types[k]``.
    acc_types : tuple of 4 FixedType
        Exact accumulators of ``W x + U h + b`` (sized so they cannot overflow).
    gate_types : tuple of 4 FixedType
        The gate_acc quantisers: each accumulator is cast to this pre-activation type.
    act_types : tuple of 4 FixedType
        Types of the activation outputs (sigmoid for i, f, o; tanh for g).
    gate_tables : ndarray, int64, (4, 2**gate_width)
        ``act_types[k]`` mantissas for every ``gate_types[k]`` mantissa (see
        :func:`table_index`). All gate types have the same width.
    cell_type : FixedType
        The cell-state quantiser, applied to ``f*c``, ``i*g`` and their sum.
    tanh_type : FixedType
        Type of ``tanh(c)``.
    tanh_table : ndarray, int64, (2**cell_type.width,)
        ``tanh_type`` mantissas for every ``cell_type`` mantissa.
    return_sequences : bool
        Output every step's hidden state or only the last one.
    """

    kind: ClassVar[str] = "lstm"

    input_weight: np.ndarray = field(default_factory=lambda: _z((4, 1, 1)))
    hidden_weight: np.ndarray = field(default_factory=lambda: _z((4, 1, 1)))
    input_weight_types: tuple[FixedType, ...] = ()
    hidden_weight_types: tuple[FixedType, ...] = ()
    bias: np.ndarray | None = None
    bias_types: tuple[FixedType, ...] | None = None
    acc_types: tuple[FixedType, ...] = ()
    gate_types: tuple[FixedType, ...] = ()
    act_types: tuple[FixedType, ...] = ()
    gate_tables: np.ndarray = field(default_factory=lambda: _z((4, 1)))
    cell_type: FixedType = FixedType(8, 3)
    tanh_type: FixedType = FixedType(8, 1)
    tanh_table: np.ndarray = field(default_factory=lambda: _z((1,)))
    return_sequences: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        name = self.name
        if len(self.inputs) != 1:
            raise FormatError(f"layer {name!r}: an LSTM takes one input, got {self.inputs}")
        wi = _int_array(name, "input_weight", self.input_weight, 3)
        wh = _int_array(name, "hidden_weight", self.hidden_weight, 3)
        if wi.shape[0] != 4 or wh.shape[0] != 4:
            raise FormatError(f"layer {name!r}: weights need 4 gates (i, f, g, o) on axis 0")
        hidden = wi.shape[1]
        if wh.shape != (4, hidden, hidden):
            raise FormatError(
                f"layer {name!r}: hidden_weight shape {wh.shape}, expected {(4, hidden, hidden)}"
            )
        object.__setattr__(self, "input_weight", wi)
        object.__setattr__(self, "hidden_weight", wh)
        for fname in (
            "input_weight_types",
            "hidden_weight_types",
            "acc_types",
            "gate_types",
            "act_types",
        ):
            self._types4(fname)
        for k in range(4):
            _check_mantissas(name, f"input_weight[{GATES[k]}]", wi[k], self.input_weight_types[k])
            _check_mantissas(name, f"hidden_weight[{GATES[k]}]", wh[k], self.hidden_weight_types[k])
        if (self.bias is None) != (self.bias_types is None):
            raise FormatError(f"layer {name!r}: bias and bias_types go together")
        if self.bias is not None:
            self._types4("bias_types")
            bias = _int_array(name, "bias", self.bias, 2)
            if bias.shape != (4, hidden):
                raise FormatError(
                    f"layer {name!r}: bias shape {bias.shape}, expected {(4, hidden)}"
                )
            for k in range(4):
                assert self.bias_types is not None
                _check_mantissas(name, f"bias[{GATES[k]}]", bias[k], self.bias_types[k])
            object.__setattr__(self, "bias", bias)
        widths = {t.width for t in self.gate_types}
        if len(widths) != 1:
            raise FormatError(f"layer {name!r}: all gate_types must have one width, got {widths}")
        tables = _int_array(name, "gate_tables", self.gate_tables, 2)
        size = 1 << self.gate_types[0].width
        if tables.shape != (4, size):
            raise FormatError(
                f"layer {name!r}: gate_tables shape {tables.shape}, expected {(4, size)} "
                f"(one entry per {self.gate_types[0]} mantissa)"
            )
        for k in range(4):
            _check_mantissas(name, f"gate_tables[{GATES[k]}]", tables[k], self.act_types[k])
        object.__setattr__(self, "gate_tables", tables)
        for fname in ("cell_type", "tanh_type"):
            if not isinstance(getattr(self, fname), FixedType):
                raise FormatError(f"layer {name!r}: {fname} must be a FixedType")
        tanh_table = _int_array(name, "tanh_table", self.tanh_table, 1)
        if tanh_table.shape != (1 << self.cell_type.width,):
            raise FormatError(
                f"layer {name!r}: tanh_table has {tanh_table.shape[0]} entries, expected "
                f"{1 << self.cell_type.width} (one per {self.cell_type} mantissa)"
            )
        _check_mantissas(name, "tanh_table", tanh_table, self.tanh_type)
        object.__setattr__(self, "tanh_table", tanh_table)
        object.__setattr__(self, "return_sequences", bool(self.return_sequences))
        expected = (hidden,) if not self.return_sequences else (self.out_shape[0], hidden)
        if self.out_shape[-1] != hidden or len(self.out_shape) != len(expected):
            raise FormatError(
                f"layer {name!r}: out_shape {self.out_shape} does not fit hidden_size {hidden} "
                f"with return_sequences={self.return_sequences}"
            )

    def _types4(self, fname: str) -> None:
        value = getattr(self, fname)
        if value is None or len(value) != 4 or not all(isinstance(t, FixedType) for t in value):
            raise FormatError(f"layer {self.name!r}: {fname} must be 4 FixedTypes (i, f, g, o)")
        object.__setattr__(self, fname, tuple(value))

    @property
    def hidden_size(self) -> int:
        return int(self.input_weight.shape[1])

    @property
    def input_size(self) -> int:
        return int(self.input_weight.shape[2])

    def acc_frac(self, in_type: FixedType) -> list[int]:
        """Fractional bits each gate's products and bias need to be summed exactly."""
        fracs = []
        for k in range(4):
            parts = [in_type.frac + self.input_weight_types[k].frac]
            parts.append(self.out_type.frac + self.hidden_weight_types[k].frac)
            if self.bias_types is not None:
                parts.append(self.bias_types[k].frac)
            fracs.append(max(parts))
        return fracs

    def describe(self) -> str:
        seq = "seq" if self.return_sequences else "last"
        return f"{self.input_size}->{self.hidden_size} ({seq})"


def _aligned_weights(
    layer: LSTM, in_type: FixedType
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Weights (transposed, gates concatenated) and bias, shifted onto each gate's acc grid."""
    fracs = layer.acc_frac(in_type)
    wi, wh, bias = [], [], []
    for k, frac in enumerate(fracs):
        what = f"layer {layer.name!r} gate {GATES[k]}"
        wi.append(
            _shift_left(
                layer.input_weight[k], frac - in_type.frac - layer.input_weight_types[k].frac, what
            )
        )
        wh.append(
            _shift_left(
                layer.hidden_weight[k],
                frac - layer.out_type.frac - layer.hidden_weight_types[k].frac,
                what,
            )
        )
        if layer.bias is not None:
            assert layer.bias_types is not None
            bias.append(_shift_left(layer.bias[k], frac - layer.bias_types[k].frac, what))
        else:
            bias.append(np.zeros(layer.hidden_size, np.int64))
        if layer.acc_types[k].frac < frac:
            raise FormatError(
                f"{what}: acc_type {layer.acc_types[k]} has {layer.acc_types[k].frac} fractional "
                f"bits but the products need {frac}"
            )
    return np.concatenate(wi).T.copy(), np.concatenate(wh).T.copy(), np.concatenate(bias), fracs


@register_simulator("lstm")
def _sim_lstm(
    layer: LSTM, graph: HwGraph, xs: list[np.ndarray], types: list[FixedType]
) -> np.ndarray:
    x, in_type = xs[0], types[0]
    if x.ndim != 3 or x.shape[2] != layer.input_size:
        raise FormatError(
            f"layer {layer.name!r}: input must be (N, T, {layer.input_size}), got {x.shape}"
        )
    n, steps, _ = x.shape
    hid = layer.hidden_size
    wi_t, wh_t, bias, fracs = _aligned_weights(layer, in_type)
    # Input contributions for every step at once; hidden ones step by step.
    x_part = matmul_exact(x.reshape(n * steps, -1), wi_t).reshape(n, steps, 4 * hid) + bias
    out_t, cell_t = layer.out_type, layer.cell_type
    h = np.zeros((n, hid), np.int64)
    c = np.zeros((n, hid), np.int64)
    h_absmax = max(abs(out_t.int_min), abs(out_t.int_max))
    outputs = []
    for t in range(steps):
        acc = x_part[:, t] + matmul_exact(h, wh_t, h_absmax)
        acts = []
        for k in range(4):
            gate_acc = layer.acc_types[k].quantize_int(acc[:, k * hid : (k + 1) * hid], fracs[k])
            pre = layer.gate_types[k].quantize_int(gate_acc, layer.acc_types[k].frac)
            acts.append(layer.gate_tables[k][table_index(pre, layer.gate_types[k])])
        act_i, act_f, act_g, act_o = acts
        at = layer.act_types
        fc = cell_t.quantize_int(act_f * c, at[1].frac + cell_t.frac)
        ig = cell_t.quantize_int(act_i * act_g, at[0].frac + at[2].frac)
        c = cell_t.quantize_int(fc + ig, cell_t.frac)
        tanh_c = layer.tanh_table[table_index(c, cell_t)]
        h = out_t.quantize_int(act_o * tanh_c, at[3].frac + layer.tanh_type.frac)
        if layer.return_sequences:
            outputs.append(h)
    if layer.return_sequences:
        return np.stack(outputs, axis=1)
    return h
