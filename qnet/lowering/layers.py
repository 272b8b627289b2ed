"""Lowering handlers of the built-in layers (handler signature: see :mod:`qnet.lowering`).

Each handler turns one recorded call into HwGraph layers. Brevitas semantics relied upon:

* activation quantisers (QuantIdentity, QuantReLU, output quantisers) compute
  ``clamp(round(x / scale)) * scale`` in float32, exact for power-of-two scales;
* QuantLinear / QuantConv compute ``F.linear`` / ``F.conv`` on dequantised float32 values,
  exact while every partial sum stays below 2**24 lsb (recorded per layer by the lowering);
* BatchNorm (eval) + quantised activation is a monotone function of the integer accumulator,
  lowered to a :class:`~qnet.hw.graph.MultiThreshold` whose thresholds are found by running the
  very same torch modules at integer accumulator points (binary search): exact by construction.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from qnet.errors import UnsupportedLayerError
from qnet.hw.fixed import FixedType
from qnet.hw.graph import (
    Add,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    Input,
    MaxPool,
    MultiThreshold,
    Quant,
    ReLU,
)
from qnet.hw.host import HostOp
from qnet.lowering.context import (
    Call,
    LowerContext,
    TensorRef,
    register_function_lowerer,
    register_lowerer,
)
from qnet.lowering.host import (
    ELEMENTWISE_FUNCTIONS,
    SHAPE_FUNCTIONS,
    host_op_of_function,
    host_ops_of_module,
    replay_pending,
)
from qnet.lowering.pooling import mean_pool
from qnet.lowering.quant import (
    acc_type_for,
    fixed_type_of,
    is_fixed_point_scale,
    quant_format,
    quantiser_kind,
    weight_ints,
    weight_mantissas,
)
from qnet.lowering.requant import (
    Affine,
    check_thresholds,
    exact_requant,
    real_to_float32,
    record_requant,
    search_thresholds,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from brevitas import nn as qnn
    from brevitas.quant_tensor import QuantTensor
    from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm
    from torch import nn

__all__: list[str] = []


def _value(obj: Any) -> torch.Tensor:
    return obj.value if isinstance(obj, QuantTensor) else obj


def _first_tensor(call: Call) -> Any:
    for a in list(call.args) + list(call.kwargs.values()):
        if isinstance(a, QuantTensor | torch.Tensor):
            return a
    raise UnsupportedLayerError(f"{call.source}: called without a tensor argument")


def _shape(obj: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in _value(obj).shape[1:])


def _enabled(proxy: Any) -> bool:
    return proxy is not None and bool(getattr(proxy, "is_quant_enabled", False))


# ------------------------------------------------------------------------- activations
def _act_output_type(ctx: LowerContext, call: Call) -> tuple[FixedType, float | None, Any]:
    """(type, float scale or None, QuantTensor) of a QuantIdentity/QuantReLU output, from
    re-running its quantiser on its input."""
    module = call.unit
    assert module is not None
    if _enabled(getattr(module, "input_quant", None)):
        raise ctx.unsupported(
            call,
            "an input quantiser on an activation layer",
            "QuantReLU/QuantIdentity with act_quant only",
        )
    x = _first_tensor(call)
    qt = module.act_quant(_value(x))
    if not isinstance(qt, QuantTensor):
        raise ctx.unsupported(call, "its quantiser is disabled", "an enabled integer act_quant")
    t, scale = quant_format(call.source, qt, module.act_quant, "the output quantiser")
    return t, scale, qt


def _torch_q(
    ctx: LowerContext, call: Call, ref: TensorRef, out_type: FixedType, out_scale: float | None
) -> Any:
    """q(a) by running ``ref.pending`` and the activation module in torch float32 at the
    accumulator's value (for a float-scaled accumulator: its exact real value, correctly
    rounded to float32 once)."""
    module = call.unit
    assert ref.type is not None
    in_type, shape, channels = ref.type, ref.shape, ref.shape[0]
    affine = Affine(in_type.frac, ref.scale, ref.offset, channels) if ref.is_float_scaled else None

    def q(a: np.ndarray) -> np.ndarray:
        """Integer outputs for accumulator mantissas ``a`` (K, C) -> (K, C), via torch float32."""
        if affine is not None:
            vals = real_to_float32(affine.numerators(a), affine.d)
        else:
            vals = np.ldexp(a.astype(np.float64), -in_type.frac).astype(np.float32)
        x = torch.from_numpy(vals).reshape(a.shape[0], channels, *([1] * (len(shape) - 1)))
        x = x.expand(a.shape[0], *shape).contiguous()
        y = _value(module(replay_pending(ref.pending, x))).double().numpy()
        # the module's output is float32(y_int * scale): y_int is recovered exactly
        m = np.ldexp(y, out_type.frac) if out_scale is None else np.round(y / out_scale)
        first = m.reshape(a.shape[0], channels, -1)
        if not np.all(first == first[..., :1]):
            raise ctx.unsupported(
                call, "BatchNorm output depends on the position (not per-channel)"
            )
        return first[..., 0].astype(np.int64)

    return q


def _multithreshold(
    ctx: LowerContext,
    call: Call,
    ref: TensorRef,
    out_type: FixedType,
    out_scale: float | None = None,
    relu: bool = False,
) -> TensorRef:
    """Everything between the accumulator ``ref`` and this quantiser -> MultiThreshold (exact).

    Float ops pending (BatchNorm, ...) or a binary/ternary quantiser: torch replay. Otherwise
    (float scale / float bias only): the exact real-valued requantiser."""
    assert ref.type is not None and ref.layer is not None
    if any(isinstance(p, HostOp) and p.op in ("reshape", "permute") for p in ref.pending):
        raise ctx.unsupported(
            call,
            "a reshape/permute between the accumulator and this quantiser",
            "elementwise float ops and BatchNorm between a layer and its activation",
        )
    in_type, shape, channels = ref.type, ref.shape, ref.shape[0]
    kind = quantiser_kind(getattr(call.unit, "act_quant", None))
    exact = not ref.pending and kind == "int"
    if exact:
        affine = Affine(in_type.frac, ref.scale, ref.offset, channels)
        q = exact_requant(affine, out_scale, out_type, relu)
    else:
        q = _torch_q(ctx, call, ref, out_type, out_scale)
    a_min, a_max = in_type.int_min, in_type.int_max
    thresholds, increasing, base, _ = search_thresholds(q, a_min, a_max, channels)
    layer = MultiThreshold(
        name=ctx.name(call),
        inputs=(ref.producer,),
        out_shape=shape,
        out_type=out_type,
        source=", ".join([p.source for p in ref.pending] + [call.source]),
        thresholds=thresholds,
        increasing=increasing,
        out_base=base,
    )
    if not check_thresholds(q, thresholds, increasing, base, a_min, a_max):
        raise ctx.unsupported(call, "the float operations before it are not monotone per channel")
    out = ctx.add(layer)
    if ref.is_float_scaled or out_scale is not None:
        record_requant(ctx, layer.name, ref, out_type, out_scale, relu, exact, call.path, kind)
    if out_scale is not None:
        out = dataclasses.replace(out, scale=np.array([out_scale]))
    return out


@register_lowerer(qnn.QuantIdentity, qnn.QuantReLU)
def _lower_act(ctx: LowerContext, call: Call) -> TensorRef:
    ref = ctx.input(call, 0)
    out_type, out_scale, qt = _act_output_type(ctx, call)
    assert call.module is not None
    kind = quantiser_kind(call.module.act_quant)
    is_relu = isinstance(call.module, qnn.QuantReLU)
    if ref.is_float_input:
        ref = ctx.host_input(call, 0)
        if is_relu:
            raise ctx.unsupported(
                call,
                "a QuantReLU on the unquantised model input",
                "a QuantIdentity as the first quantiser",
            )
        if kind == "ternary":
            raise ctx.unsupported(
                call, "a ternary quantiser on the model input", "an integer or binary quantiser"
            )
        if kind == "binary":
            # the sign runs on the host (float32, as Brevitas); the port takes +-scale
            scale = np.asarray(torch.as_tensor(qt.scale).detach().float().numpy()).reshape(-1)
            ctx.pre.append(HostOp("sign", scale[:1], source=call.source))
        return _input_port(ctx, call, ref.shape, out_type, out_scale, ctx.name(call))
    if ref.pending or kind != "int" or ref.is_float_scaled or out_scale is not None:
        if ref.layer is None:
            ctx.quantised_input(call, 0)  # raises the right error
        return _multithreshold(ctx, call, ref, out_type, out_scale, relu=is_relu)
    ref = ctx.quantised_input(call, 0)
    cls = ReLU if is_relu else Quant
    return ctx.add(cls(ctx.name(call), (ref.producer,), ref.shape, out_type, call.source))


def _input_port(
    ctx: LowerContext,
    call: Call,
    shape: tuple[int, ...],
    t: FixedType,
    scale: float | None,
    name: str,
) -> TensorRef:
    """The hardware input port of type ``t``. With a float ``scale``, Brevitas computes
    ``x / scale`` in float32, then rounds and clamps: the host divides (as torch does) and the
    port takes the integers."""
    if scale is not None:
        ctx.pre.append(HostOp("div", np.array([scale], np.float32), source=call.source))
    out = ctx.add(Input(name, (), shape, t, call.source))
    return out if scale is None else dataclasses.replace(out, scale=np.array([scale]))


# ----------------------------------------------------------------------- dense / conv
def _requant_input(ctx: LowerContext, call: Call, ref: TensorRef) -> tuple[TensorRef, Any]:
    """Apply the layer's own input quantiser, if enabled; return (ref, quant input)."""
    module = call.unit
    x = _first_tensor(call)
    proxy: Any = getattr(module, "input_quant", None)
    if not _enabled(proxy):
        # a plain tensor is fine: ``ref`` is a quantised layer's output (no pending float op),
        # so its values are on that layer's grid (checked by the caller)
        return ref, x
    qx = proxy(_value(x))
    t, scale = quant_format(call.source, qx, proxy, "the input quantiser")
    if scale is not None or ref.is_float_scaled:
        what = "a float-scale input quantiser" if scale is not None else "an input quantiser"
        on = "a float-scale tensor" if ref.is_float_scaled else "a quantised tensor"
        raise ctx.unsupported(
            call,
            f"{what} on {on}",
            "a QuantIdentity / QuantReLU before the layer (or power-of-two scales)",
        )
    r = ctx.add(Quant(ctx.name(call, ".input_quant"), (ref.producer,), ref.shape, t, call.source))
    return r, qx


def _weighted(ctx: LowerContext, call: Call, make: Any) -> TensorRef:
    module = call.unit
    ref = ctx.input(call, 0)
    proxy: Any = getattr(module, "input_quant", None)
    if ref.is_float_input and _enabled(proxy) and quantiser_kind(proxy) == "int":
        # the layer's own input quantiser quantises the model input: it is the input port
        ref = ctx.host_input(call, 0)
        qx = proxy(_value(_first_tensor(call)))
        t, scale = quant_format(call.source, qx, proxy, "the input quantiser")
        ref = _input_port(ctx, call, ref.shape, t, scale, ctx.name(call, ".input_quant"))
    else:
        ref = ctx.quantised_input(call, 0, float_ok=True)
        ref, qx = _requant_input(ctx, call, ref)
    assert ref.type is not None
    in_type = ref.type
    if ref.is_float_accumulator:
        raise ctx.unsupported(
            call,
            f"its input is the float accumulator of layer {ref.layer!r} (per-channel scale or "
            "float bias, no quantiser after it)",
            "a QuantReLU / QuantIdentity between the two layers",
        )
    x_real = _value(qx).double().numpy()
    x_fixed = x_real if ref.scale is None else np.round(x_real / float(ref.scale[0]))
    if not in_type.contains(x_fixed):
        raise ctx.unsupported(call, f"its input values do not fit {in_type}")
    qw = module.quant_weight(qx)
    weight, weight_type, w_scale = weight_ints(call.source, qw, "weight")
    # the bias as Brevitas adds it: a float tensor (bias_quant=None) or a QuantTensor
    qb = module.bias_quant(module.bias, qx, qw) if module.bias is not None else None
    float_bias = qb is not None and not (
        isinstance(qb, QuantTensor) and is_fixed_point_scale(qb.scale)
    )
    floating = ref.scale is not None or w_scale is not None or float_bias
    bias = bias_type = None
    if qb is not None and not floating:
        bias, bias_type = weight_mantissas(call.source, qb, "bias")
        bias = bias.reshape(-1)
    acc_type, bound = acc_type_for(in_type, weight, weight_type, bias, bias_type)
    out_type = acc_type
    out_scale = None
    if _enabled(getattr(module, "output_quant", None)):
        out_qt = call.output
        if not isinstance(out_qt, QuantTensor):
            out_qt = module.output_quant(_value(call.output))
        out_type, out_scale = quant_format(
            call.source, out_qt, module.output_quant, "the output quantiser"
        )
        if not floating and out_scale is not None:
            floating = True
    name = ctx.name(call, ".acc" if floating and out_type is not acc_type else "")
    layer = make(
        name=name,
        inputs=(ref.producer,),
        out_shape=_shape(call.output),
        out_type=acc_type if floating else out_type,
        source=call.source,
        weight=weight,
        weight_type=weight_type,
        bias=bias,
        bias_type=bias_type,
        acc_type=acc_type,
    )
    ctx.record_acc_bound(name, bound, float_scaled=floating)
    out = ctx.add(layer)
    if not floating:
        return out
    channels = layer.out_shape[0]
    in_scale = 1.0 if ref.scale is None else float(ref.scale[0])
    acc_scale = (w_scale if w_scale is not None else np.ones(channels)) * in_scale
    offset = None if qb is None else _value(qb).detach().double().cpu().numpy().reshape(-1)
    out = dataclasses.replace(out, scale=acc_scale, offset=offset)
    if out_type is acc_type:
        return out
    # a float-scale layer with its own output quantiser: requantise right here
    return _multithreshold(ctx, call, out, out_type, out_scale, relu=False)


@register_lowerer(qnn.QuantLinear)
def _lower_linear(ctx: LowerContext, call: Call) -> TensorRef:
    ref = ctx.input(call, 0)
    if len(ref.shape) != 1:
        raise ctx.unsupported(
            call,
            f"input of per-sample shape {ref.shape}",
            "QuantLinear on flat (N, features) input (Flatten first)",
        )
    return _weighted(ctx, call, Dense)


def _pair(v: Any, dims: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, tuple | list) else (int(v),) * dims


@register_lowerer(qnn.QuantConv1d, qnn.QuantConv2d)
def _lower_conv(ctx: LowerContext, call: Call) -> TensorRef:
    m = call.unit
    dims = 1 if isinstance(m, qnn.QuantConv1d) else 2
    accepted = "integer zero padding (padding_mode='zeros'); any groups, stride, dilation"
    if isinstance(m.padding, str) or m.padding_mode != "zeros":
        raise ctx.unsupported(
            call, f"padding={m.padding!r}, padding_mode={m.padding_mode!r}", accepted
        )

    def make(**kw: Any) -> Conv:
        return Conv(
            stride=_pair(m.stride, dims),
            padding=_pair(m.padding, dims),
            groups=m.groups,
            dilation=_pair(m.dilation, dims),
            **kw,
        )

    return _weighted(ctx, call, make)


# ------------------------------------------------------------------------ float ops
@register_lowerer(nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, TensorNorm)
def _lower_pending(ctx: LowerContext, call: Call) -> TensorRef:
    """Float modules: host preprocessing on the model input; after a layer, deferred until the
    next quantised activation (MultiThreshold) or to the host postprocessing."""
    ref = ctx.input(call, 0)
    m = call.module
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and not m.track_running_stats:
        raise ctx.unsupported(
            call, "BatchNorm without running statistics", "track_running_stats=True"
        )
    if ref.is_float_input:
        ref = ctx.host_input(call, 0)
        ops = host_ops_of_module(ctx, call)
        assert ops is not None
        ctx.pre.extend(ops)
        return TensorRef(None, None, _shape(call.output), host=len(ctx.pre))
    return dataclasses.replace(ref, pending=ref.pending + (call,))


@register_lowerer(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
def _lower_identity(ctx: LowerContext, call: Call) -> None:
    ctx.input(call, 0)
    return None


# ------------------------------------------------------------------------ pooling / shape
@register_lowerer(nn.MaxPool1d, nn.MaxPool2d)
def _lower_maxpool(ctx: LowerContext, call: Call) -> TensorRef:
    m = call.unit
    dims = 1 if isinstance(m, nn.MaxPool1d) else 2
    ref = ctx.quantised_input(call, 0, float_ok=True)  # max commutes with a positive scale
    kernel = _pair(m.kernel_size, dims)
    stride = _pair(m.stride if m.stride is not None else m.kernel_size, dims)
    accepted = "padding=0, dilation=1, return_indices=False, ceil_mode=False"
    if any(_pair(m.padding, dims)) or any(d != 1 for d in _pair(m.dilation, dims)):
        raise ctx.unsupported(call, f"padding={m.padding}, dilation={m.dilation}", accepted)
    if m.return_indices or m.ceil_mode:
        raise ctx.unsupported(call, "return_indices/ceil_mode", accepted)
    out = ctx.add(
        MaxPool(
            ctx.name(call),
            (ref.producer,),
            _shape(call.output),
            ref.fixed_type,
            call.source,
            kernel=kernel,
            stride=stride,
        )
    )
    return dataclasses.replace(out, scale=ref.scale, offset=ref.offset)


@register_lowerer(nn.AvgPool1d, nn.AvgPool2d)
def _lower_avgpool(ctx: LowerContext, call: Call) -> TensorRef:
    m = call.unit
    dims = 1 if isinstance(m, nn.AvgPool1d) else 2
    ref = ctx.quantised_input(call, 0, float_ok=True)  # the mean commutes with an affine
    assert ref.type is not None
    kernel = _pair(m.kernel_size, dims)
    stride = _pair(m.stride if m.stride is not None else m.kernel_size, dims)
    n = int(np.prod(kernel))
    accepted = "padding=0, ceil_mode=False, no divisor_override"
    if any(_pair(m.padding, dims)) or m.ceil_mode or getattr(m, "divisor_override", None):
        raise ctx.unsupported(call, "padding/ceil_mode/divisor_override", accepted)
    if n & (n - 1):  # exact sum in hardware, torch's float32 division pending (pooling.py)
        if ref.is_float_scaled:
            raise ctx.unsupported(
                call,
                f"a window of {n} values (not a power of two) on a float-scale tensor",
                "a power-of-two window, or power-of-two scales",
            )
        return mean_pool(ctx, call, ref, kernel, _shape(call.output), stride)
    log2n = n.bit_length() - 1
    t = ref.type
    out_type = FixedType(t.width + log2n, t.integer, t.signed, t.rounding, t.overflow)
    if out_type.width > 53:
        raise ctx.unsupported(call, f"its exact mean needs {out_type.width} bits", accepted)
    out = ctx.add(
        AvgPool(
            ctx.name(call),
            (ref.producer,),
            _shape(call.output),
            out_type,
            call.source,
            kernel=kernel,
            stride=stride,
        )
    )
    return dataclasses.replace(out, scale=ref.scale, offset=ref.offset)


def _flatten(ctx: LowerContext, call: Call) -> TensorRef:
    ref = ctx.quantised_input(call, 0, float_ok=True)
    out_shape = _shape(call.output)
    in_batch = int(_value(_first_tensor(call)).shape[0])
    out_batch = int(_value(call.output).shape[0])
    if len(out_shape) != 1 or out_batch != in_batch or out_shape[0] != int(np.prod(ref.shape)):
        raise ctx.unsupported(
            call,
            f"reshape of {ref.shape} to {out_shape}",
            "flattening each sample to (N, -1) (nn.Flatten(), torch.flatten(x, 1))",
        )
    if len(ref.shape) == 1:
        return ref
    if ref.is_float_accumulator:
        # a per-channel float accumulator: the flatten waits on the host (or is refused by
        # whatever consumes it)
        op = HostOp("reshape", shape=out_shape, source=call.source)
        return dataclasses.replace(ref, shape=out_shape, pending=ref.pending + (op,))
    out = ctx.add(Flatten(ctx.name(call), (ref.producer,), out_shape, ref.fixed_type, call.source))
    return dataclasses.replace(out, scale=ref.scale)


@register_lowerer(nn.Flatten)
def _lower_flatten_module(ctx: LowerContext, call: Call) -> TensorRef:
    ref = ctx.input(call, 0)
    if ref.is_float_input or ref.pending:
        out_shape = _shape(call.output)
        op = HostOp("reshape", shape=out_shape, source=call.source)
        if ref.pending:
            return dataclasses.replace(ref, shape=out_shape, pending=ref.pending + (op,))
        ctx.host_input(call, 0)
        ctx.pre.append(op)
        return TensorRef(None, None, out_shape, host=len(ctx.pre))
    return _flatten(ctx, call)


# ------------------------------------------------------------------------------ add
def _add_type(a: FixedType, b: FixedType) -> FixedType:
    """The exact type of a + b."""
    frac = max(a.frac, b.frac)
    lo = (a.int_min << (frac - a.frac)) + (b.int_min << (frac - b.frac))
    hi = (a.int_max << (frac - a.frac)) + (b.int_max << (frac - b.frac))
    signed = a.signed or b.signed
    if signed:
        width = max(int(hi).bit_length(), int(-lo - 1).bit_length() if lo < 0 else 0) + 1
    else:
        width = int(hi).bit_length()
    return FixedType(width, width - frac, signed)


def _add_layers(
    ctx: LowerContext, call: Call, a: TensorRef, b: TensorRef, out_type: FixedType | None
) -> TensorRef:
    assert a.type is not None and b.type is not None
    if a.shape != b.shape:
        raise ctx.unsupported(
            call, f"adding shapes {a.shape} and {b.shape}", "two tensors of the same shape"
        )
    t = out_type or _add_type(a.type, b.type)
    return ctx.add(Add(ctx.name(call), (a.producer, b.producer), a.shape, t, call.source))


_ADD_FUNCTIONS = (torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__)


@register_function_lowerer(*SHAPE_FUNCTIONS, *ELEMENTWISE_FUNCTIONS)
def _lower_float_fn(ctx: LowerContext, call: Call) -> TensorRef:
    """Shape and elementwise torch functions (see :mod:`qnet.lowering.host`).

    On the model input: host preprocessing. Two quantised tensors added: an Add layer.
    Flattening a quantised tensor: a Flatten layer. Otherwise the op stays pending (it becomes
    part of a MultiThreshold or of the host postprocessing).
    """
    ref = ctx.input(call, 0)
    if ref.is_float_input:
        ref = ctx.host_input(call, 0)
        ctx.pre.append(host_op_of_function(ctx, call, ref.shape))
        return TensorRef(None, None, _shape(call.output), host=len(ctx.pre))
    if call.target in _ADD_FUNCTIONS and len(call.inputs) == 2:
        if call.kwargs.get("alpha", 1) != 1:
            raise ctx.unsupported(call, "addition with alpha", "the sum of two quantised tensors")
        a, b = ctx.quantised_input(call, 0), ctx.quantised_input(call, 1)
        return _add_layers(ctx, call, a, b, None)
    if call.target in SHAPE_FUNCTIONS and not ref.pending:
        return _flatten(ctx, call)
    op = host_op_of_function(ctx, call, ref.shape)
    return dataclasses.replace(ref, shape=_shape(call.output), pending=ref.pending + (op,))


@register_lowerer(qnn.QuantEltwiseAdd)
def _lower_eltwise_add(ctx: LowerContext, call: Call) -> TensorRef:
    m = call.unit
    refs = [ctx.quantised_input(call, 0), ctx.quantised_input(call, 1)]
    xs = [a for a in call.args if isinstance(a, QuantTensor | torch.Tensor)]
    if _enabled(m.input_quant):
        new = []
        for i, (r, x) in enumerate(zip(refs, xs, strict=True)):
            qx = m.input_quant(_value(x))
            t = fixed_type_of(call.source, qx, m.input_quant, "the input quantiser")
            new.append(
                ctx.add(
                    Quant(
                        ctx.name(call, f".input_quant{i}"), (r.producer,), r.shape, t, call.source
                    )
                )
            )
        refs = new
    out_type = None
    if _enabled(m.output_quant):
        out_qt = call.output if isinstance(call.output, QuantTensor) else None
        if out_qt is None:
            qa = m.input_quant(_value(xs[0])) if _enabled(m.input_quant) else xs[0]
            qb = m.input_quant(_value(xs[1])) if _enabled(m.input_quant) else xs[1]
            out_qt = m.output_quant(_value(qa) + _value(qb))
        out_type = fixed_type_of(call.source, out_qt, m.output_quant, "the output quantiser")
    return _add_layers(ctx, call, refs[0], refs[1], out_type)
