"""Lowering of Brevitas ``QuantLSTM`` to the hardware :class:`~qnet.hw.lstm.LSTM` layer.

Every quantiser of the cell must be fixed point (power-of-two per-tensor scale, zero point 0,
saturating; the roundings :mod:`qnet.lowering.quant` accepts); anything else raises
:class:`~qnet.errors.UnsupportedLayerError`.
Scales are read from the eval-mode module (they are learned or calibrated). Each activation
quantiser's :class:`FixedType` is also checked against the quantiser itself on a dense grid of
inputs, and the activation tables are computed by calling Brevitas' own (fused
activation + quantiser) proxies on every representable input: exact by construction.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from qnet.errors import UnsupportedLayerError
from qnet.hw.fixed import FixedType
from qnet.hw.graph import Layer, Quant
from qnet.hw.lstm import LSTM
from qnet.lowering.context import (
    Call,
    LowerContext,
    TensorRef,
    register_function_lowerer,
    register_lowerer,
)
from qnet.lowering.quant import acc_type_from_bound, proxy_type, weight_mantissas

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from brevitas.nn import QuantLSTM

__all__ = ["lower_quant_lstm", "lstm_io_type", "act_proxy_type", "acc_bound"]

_GATE_PARAMS = ("input_gate_params", "forget_gate_params", "cell_gate_params", "output_gate_params")
_ACC_QUANTS = ("input_acc_quant", "forget_acc_quant", "cell_acc_quant", "output_acc_quant")
_ACT_QUANTS = (
    "input_sigmoid_quant",
    "forget_sigmoid_quant",
    "cell_tanh_quant",
    "output_sigmoid_quant",
)


#: What a QuantLSTM must look like (appended to every refusal).
_ACCEPTED = (
    "qnet lowers a QuantLSTM (num_layers=1, unidirectional, batch_first=True, no coupled "
    "gates) whose quantisers are all fixed point: power-of-two per-tensor scale, zero point 0, "
    "round-half-even/floor/round-to-zero, saturating (e.g. Brevitas' *FixedPoint quantisers)"
)


def _unsupported(where: str, what: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(f"{where}: {what}; accepted: {_ACCEPTED}")


def _value(out: Any) -> torch.Tensor:
    """The tensor of a proxy output (a QuantTensor, a tuple (value, scale, ...), or a tensor)."""
    if hasattr(out, "value"):
        return out.value
    if isinstance(out, tuple):
        return out[0]
    return out


def act_proxy_type(proxy: Any, where: str) -> FixedType:
    """The :class:`FixedType` of a Brevitas activation quant proxy of the cell.

    Raises
    ------
    UnsupportedLayerError
        If the quantiser is disabled or not fixed point.
    """
    return proxy_type(proxy, where, accepted=_ACCEPTED)


def _check_quantiser(quant_fn: Any, t: FixedType, where: str) -> None:
    """Compare ``quant_fn`` (float32 tensor -> tensor) with ``t`` on a dense grid incl. ties."""
    fine = t.frac + 2
    span = 1 << (t.width + 2)
    grid = np.arange(-span, span + 1, dtype=np.int64) if t.signed else np.arange(-4, span + 1)
    values = np.ldexp(grid.astype(np.float64), -fine)
    with torch.no_grad():
        got = _value(quant_fn(torch.tensor(values, dtype=torch.float32))).double().numpy()
    want = t.quantize(values)
    if not np.array_equal(got, want):
        bad = int(np.argmax(got != want))
        raise _unsupported(
            where,
            f"the quantiser does not behave as {t}: input {values[bad]} -> {got[bad]}, "
            f"expected {want[bad]}",
        )


def _act_quant_fn(layer: Any, name: str) -> Any:
    """The callable the cell applies for quantiser ``name`` (as the fast or the plain cell)."""
    proxy = getattr(layer.cell, name)
    if layer.fast_mode:
        return proxy.fused_activation_quant_proxy
    return proxy


def _table(layer: Any, name: str, domain: FixedType, out: FixedType, where: str) -> np.ndarray:
    """``out`` mantissas of quantiser ``name`` at every ``domain`` value (float32, as Brevitas)."""
    mantissas = np.arange(domain.int_min, domain.int_max + 1, dtype=np.int64)
    x = torch.tensor(domain.from_int(mantissas), dtype=torch.float32)
    with torch.no_grad():
        y = _value(_act_quant_fn(layer, name)(x)).double().numpy()
    scaled = np.ldexp(y, out.frac)
    if not np.array_equal(scaled, np.round(scaled)) or not out.contains(y):
        raise _unsupported(where, f"table values of {name} do not fit {out}")
    return scaled.astype(np.int64)


def _mantissas(q: Any, where: str) -> tuple[np.ndarray, FixedType]:
    return weight_mantissas(where, q, "weight", per_channel_ok=False, accepted=_ACCEPTED)


def lstm_io_type(module: QuantLSTM, name: str = "lstm") -> FixedType:
    """The FixedType of the LSTM's io quantiser (its input is requantised to it; h has it)."""
    layer = _single_layer(module, name)
    t = act_proxy_type(layer.io_quant, f"{name}.io_quant")
    _check_quantiser(layer.io_quant.fused_activation_quant_proxy, t, f"{name}.io_quant")
    return t


def _single_layer(module: QuantLSTM, name: str) -> Any:
    where = f"{name} ({type(module).__name__})"
    if not isinstance(module, QuantLSTM):
        raise UnsupportedLayerError(f"{where}: not a brevitas.nn.QuantLSTM")
    if len(module.layers) != 1:
        raise _unsupported(where, f"num_layers={len(module.layers)}")
    if len(module.layers[0]) != 1:
        raise _unsupported(where, "bidirectional=True")
    layer = module.layers[0][0]
    if layer.cifg:
        raise _unsupported(where, "coupled_input_forget_gates=True")
    if not layer.cell.batch_first:
        raise _unsupported(where, "batch_first=False (qnet graphs are batch first: (N, T, F))")
    if layer.reverse_input:
        raise _unsupported(where, "reversed layer")
    if module.training:
        raise _unsupported(where, "module is in training mode; call model.eval() first")
    return layer


def lower_quant_lstm(
    module: QuantLSTM,
    name: str,
    input_name: str,
    in_type: FixedType,
    in_shape: tuple[int, ...],
    return_sequences: bool = True,
) -> list[Layer]:
    """Lower one ``QuantLSTM`` to hardware layers.

    Parameters
    ----------
    module : brevitas.nn.QuantLSTM
        In eval mode.
    name : str
        The module's path (layer names derive from it).
    input_name, in_type, in_shape : str, FixedType, tuple
        The producing layer, its output type and per-sample shape ``(T, input_size)``.
    return_sequences : bool
        Output ``(T, hidden)`` (the QuantLSTM's ``outputs``) or only the last step ``(hidden,)``.

    Returns
    -------
    list of Layer
        A :class:`~qnet.hw.graph.Quant` requantising the input to the io type (only when
        ``in_type`` differs from it and the layer quantises its input: not
        ``quantize_output_only``), then the :class:`~qnet.hw.lstm.LSTM`.
    """
    layer = _single_layer(module, name)
    src = f"{name}: {type(module).__name__}"
    if len(in_shape) != 2 or in_shape[1] != layer.input_size:
        raise _unsupported(src, f"input shape {in_shape}, expected (T, {layer.input_size})")
    io_t = lstm_io_type(module, name)
    out: list[Layer] = []
    # quantize_output_only: the input (already fixed point, ``in_type``) enters the cell as it
    # is; io_quant quantises only h
    x_t = in_type if layer.quantize_output_only else io_t
    if x_t != in_type:
        out.append(Quant(f"{name}.io_quant", (input_name,), tuple(in_shape), io_t, src))
        input_name = out[-1].name
    cell = layer.cell
    gate_types, act_types = [], []
    for k in range(4):
        where = f"{name}.{_ACC_QUANTS[k]}"
        t = act_proxy_type(getattr(cell, _ACC_QUANTS[k]), where)
        _check_quantiser(_act_quant_fn(layer, _ACC_QUANTS[k]), t, where)
        gate_types.append(t)
        act_types.append(act_proxy_type(getattr(cell, _ACT_QUANTS[k]), f"{name}.{_ACT_QUANTS[k]}"))
    cell_t = act_proxy_type(cell.cell_state_quant, f"{name}.cell_state_quant")
    _check_quantiser(_act_quant_fn(layer, "cell_state_quant"), cell_t, f"{name}.cell_state_quant")
    tanh_t = act_proxy_type(cell.hidden_state_tanh_quant, f"{name}.hidden_state_tanh_quant")
    if len({t.width for t in gate_types}) != 1:
        raise _unsupported(src, "gate accumulator quantisers of different bit widths")
    for t, what in [(gate_types[0], "gate_acc_quant"), (cell_t, "cell_state_quant")]:
        if t.width > 12:
            raise _unsupported(src, f"{what} of {t.width} bits: activation tables need <= 12 bits")

    with torch.no_grad():
        quant_input = _zero_input(layer, x_t)
        wi, wh, wi_t, wh_t, bias, bias_t = [], [], [], [], [], []
        for gp_name in _GATE_PARAMS:
            gp = getattr(layer, gp_name)
            where = f"{name}.{gp_name}"
            qwi = gp.input_weight()
            m, t = _mantissas(qwi, f"{where}.input_weight")
            wi.append(m)
            wi_t.append(t)
            m, t = _mantissas(gp.hidden_weight(), f"{where}.hidden_weight")
            wh.append(m)
            wh_t.append(t)
            qb = gp.bias_quant(gp.bias, quant_input, qwi)
            if qb is not None:
                m, t = weight_mantissas(f"{where}.bias", qb, "bias", False, _ACCEPTED)
                bias.append(m)
                bias_t.append(t)
    has_bias = bool(bias)
    hid = layer.hidden_size

    # Exact accumulators, sized from the bound on |W x + U h + b| on each gate's grid.
    acc_types = []
    x_abs = max(abs(x_t.int_min), abs(x_t.int_max))
    h_abs = max(abs(io_t.int_min), abs(io_t.int_max))
    for k in range(4):
        parts = [x_t.frac + wi_t[k].frac, io_t.frac + wh_t[k].frac]
        if has_bias:
            parts.append(bias_t[k].frac)
        frac = max(parts)
        bound_rows = (np.abs(wi[k]).sum(axis=1) << (frac - parts[0])) * x_abs
        bound_rows = bound_rows + (np.abs(wh[k]).sum(axis=1) << (frac - parts[1])) * h_abs
        if has_bias:
            bound_rows = bound_rows + (np.abs(bias[k]) << (frac - parts[2]))
        acc_types.append(acc_type_from_bound(int(bound_rows.max()), frac))

    gate_tables = np.stack(
        [
            _table(layer, _ACT_QUANTS[k], gate_types[k], act_types[k], f"{name}.{_ACT_QUANTS[k]}")
            for k in range(4)
        ]
    )
    tanh_table = _table(
        layer, "hidden_state_tanh_quant", cell_t, tanh_t, f"{name}.hidden_state_tanh_quant"
    )
    steps = int(in_shape[0])
    out.append(
        LSTM(
            name=name,
            inputs=(input_name,),
            out_shape=(steps, hid) if return_sequences else (hid,),
            out_type=io_t,
            source=src,
            input_weight=np.stack(wi),
            hidden_weight=np.stack(wh),
            input_weight_types=tuple(wi_t),
            hidden_weight_types=tuple(wh_t),
            bias=np.stack(bias) if has_bias else None,
            bias_types=tuple(bias_t) if has_bias else None,
            acc_types=tuple(acc_types),
            gate_types=tuple(gate_types),
            act_types=tuple(act_types),
            gate_tables=gate_tables,
            cell_type=cell_t,
            tanh_type=tanh_t,
            tanh_table=tanh_table,
            return_sequences=return_sequences,
        )
    )
    return out


def _zero_input(layer: Any, x_t: FixedType) -> Any:
    """A zero input QuantTensor of type ``x_t`` (the bias quantiser reads its scale)."""
    if not layer.quantize_output_only:
        return layer.io_quant(torch.zeros(1, layer.input_size))
    from brevitas.quant_tensor import IntQuantTensor

    return IntQuantTensor(
        torch.zeros(1, layer.input_size),
        torch.tensor(2.0**-x_t.frac),
        torch.tensor(0.0),
        torch.tensor(float(x_t.width)),
        x_t.signed,
        False,
    )


def acc_bound(layer: LSTM, in_type: FixedType) -> int:
    """Largest |partial sum| of any gate accumulator, in lsb of that accumulator."""
    fracs = layer.acc_frac(in_type)
    x_abs = max(abs(in_type.int_min), abs(in_type.int_max))
    h_abs = max(abs(layer.out_type.int_min), abs(layer.out_type.int_max))
    worst = 0
    for k in range(4):
        rows = (np.abs(layer.input_weight[k]).sum(axis=1) * x_abs) << (
            fracs[k] - in_type.frac - layer.input_weight_types[k].frac
        )
        rows = rows + (
            (np.abs(layer.hidden_weight[k]).sum(axis=1) * h_abs)
            << (fracs[k] - layer.out_type.frac - layer.hidden_weight_types[k].frac)
        )
        if layer.bias is not None and layer.bias_types is not None:
            rows = rows + (np.abs(layer.bias[k]) << (fracs[k] - layer.bias_types[k].frac))
        worst = max(worst, int(rows.max()))
    return worst


# ------------------------------------------------------------------ lowering handlers
@register_lowerer(QuantLSTM)
def _lower_lstm(ctx: LowerContext, call: Call) -> TensorRef:
    x = ctx.quantised_input(call, 0)
    extra = [a for a in call.args[1:] if a is not None]
    extra += [v for k, v in call.kwargs.items() if k in ("hx", "cx") and v is not None]
    if extra:
        raise ctx.unsupported(
            call,
            "initial hidden/cell states are passed",
            "QuantLSTM(x) with zero initial states",
        )
    assert x.type is not None and x.layer is not None
    name = ctx.name(call)
    layers = lower_quant_lstm(call.module, name, x.layer, x.type, x.shape, True)
    ref = x
    for layer in layers:
        ref = ctx.add(layer)
    lstm = layers[-1]
    assert isinstance(lstm, LSTM)
    ctx.record_acc_bound(lstm.name, acc_bound(lstm, ctx.layer(lstm.inputs[0]).out_type))
    return ref


@register_function_lowerer(torch.Tensor.__getitem__)
def _lower_last_step(ctx: LowerContext, call: Call) -> TensorRef:
    ref = ctx.input(call, 0)
    layer = ctx.layer(ref.layer) if ref.layer is not None else None
    accepted = "x[:, -1] (or x[:, -1, :]) on the sequence output of a QuantLSTM"
    if not isinstance(layer, LSTM) or not layer.return_sequences:
        raise ctx.unsupported(call, "indexing a tensor", accepted)
    index = call.args[1] if len(call.args) > 1 else None
    index = index if isinstance(index, tuple) else (index,)
    steps = layer.out_shape[0]
    full = slice(None)
    ok = (
        len(index) in (2, 3)
        and index[0] == full
        and isinstance(index[1], int)
        and index[1] in (-1, steps - 1)
        and all(i == full for i in index[2:])
    )
    if not ok:
        raise ctx.unsupported(call, f"index {index!r}", accepted)
    # A twin of the LSTM that outputs only the last step; the full-sequence one is pruned
    # from the graph when nothing else reads it.
    last = dataclasses.replace(
        layer,
        name=ctx.unique_name(f"{layer.name}.last"),
        out_shape=(layer.hidden_size,),
        return_sequences=False,
    )
    lstm_ref = ctx.add(last)
    ctx.record_acc_bound(last.name, acc_bound(last, ctx.layer(last.inputs[0]).out_type))
    return lstm_ref
