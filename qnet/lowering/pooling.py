"""Lowering of average pooling over any window, global average pooling and Brevitas'
``TruncAvgPool2d`` / ``TruncAdaptiveAvgPool2d`` on power-of-two quantised tensors.

Exact semantics. torch (CPU, float32) computes every average pool and ``mean`` as
``fl32(S / n)``: ``S``, the window sum of the dequantised inputs, is exact while its
magnitude stays below ``2**24`` lsb (checked on torch 2.13 for ``adaptive_avg_pool2d``,
``avg_pool2d``, ``mean`` against ``fl32(S) / n`` and ``fl32(S) * fl32(1 / n)``: the division
matches on every input, the reciprocal product does not). So:

* ``n`` a power of two: ``S / n`` is an exact shift; an :class:`~qnet.hw.graph.AvgPool` layer
  holds the exact mean, and whatever consumes it (a quantiser, a QuantLinear) sees exact
  fixed-point values.
* any other ``n``: the hardware computes the exact sum ``S`` (a depthwise
  :class:`~qnet.hw.graph.Conv` of ones: an adder tree), and the division stays a pending
  float32 op (``HostOp('div', n)``). The next quantised activation turns the division and the
  quantiser into a :class:`~qnet.hw.graph.MultiThreshold` whose thresholds come from running
  the very same float32 division and Brevitas quantiser at every integer sum (exact by
  construction); at the model output the host divides in float32, exactly as torch. A
  quantised layer that reads the non-power-of-two mean directly (no quantiser in between)
  is refused: its input would have the scale ``scale / n``.
* ``TruncAvgPool2d``/``TruncAdaptiveAvgPool2d``: Brevitas recovers the integer sum, divides
  by ``2**(input_bits - output_bits)`` with ``round`` (half to even) or ``floor`` and clamps;
  with a power-of-two window that is the exact mean followed by a cast (``AvgPool`` +
  ``Quant``). Other windows give a scale ``scale * 2**k / n`` that is not a power of two and
  are refused.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import AvgPool, Conv, Flatten, Quant
from qnet.hw.host import HostOp
from qnet.lowering.context import (
    Call,
    LowerContext,
    TensorRef,
    register_function_lowerer,
    register_lowerer,
)
from qnet.lowering.quant import acc_type_for, scale_fracs

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from brevitas import nn as qnn
    from brevitas.quant_tensor import IntQuantTensor, QuantTensor
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

__all__ = ["mean_pool"]

_ONE = FixedType(2, 2, True)  # the sum's weights: 1 (a 2-bit signed mantissa)


def _value(obj: Any) -> torch.Tensor:
    return obj.value if isinstance(obj, QuantTensor) else obj


def _out_shape(obj: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in _value(obj).shape[1:])


def mean_pool(
    ctx: LowerContext,
    call: Call,
    ref: TensorRef,
    kernel: tuple[int, ...],
    out_shape: tuple[int, ...],
    stride: tuple[int, ...] | None = None,
) -> TensorRef:
    """Average of ``ref`` over ``kernel`` windows (``stride``: the kernel by default), exactly
    as torch's float32 average (see the module docstring); ``out_shape`` is the call's
    per-sample output shape (a flat ``(C,)`` for a ``mean`` without ``keepdim``)."""
    stride = stride or kernel
    t = ref.fixed_type
    n = int(np.prod(kernel))
    channels = ref.shape[0]
    spatial = zip(ref.shape[1:], kernel, stride, strict=True)
    pooled = (channels, *((s - k) // st + 1 for s, k, st in spatial))
    bound = max(-t.int_min, t.int_max) * n
    if n & (n - 1) == 0:
        log2n = n.bit_length() - 1
        out_type = FixedType(t.width + log2n, t.integer, t.signed, t.rounding, t.overflow)
        if out_type.width > 53:
            raise ctx.unsupported(call, f"its exact mean needs {out_type.width} bits")
        out = ctx.add(
            AvgPool(
                ctx.name(call),
                (ref.producer,),
                pooled,
                out_type,
                call.source,
                kernel=kernel,
                stride=stride,
            )
        )
        if bound >= 2**24:
            ctx.meta["float32_inexact"].append(out.producer)
        pending: tuple[Any, ...] = ()
    else:
        weight = np.ones((channels, 1, *kernel), dtype=np.int64)
        acc_type, bound = acc_type_for(t, weight, _ONE, None, None)
        name = ctx.name(call)
        out = ctx.add(
            Conv(
                name,
                (ref.producer,),
                pooled,
                acc_type,
                f"{call.source}: window sum",
                weight=weight,
                weight_type=_ONE,
                acc_type=acc_type,
                stride=stride,
                padding=(0,) * len(kernel),
                groups=channels,
            )
        )
        ctx.record_acc_bound(name, bound)
        div = HostOp(
            "div",
            np.array(n, dtype=np.float32),
            source=f"{call.source}: mean over {n} values (not a power of two)",
        )
        pending = (div,)
    if out_shape != pooled:
        if out_shape != (channels,) or any(s != 1 for s in pooled[1:]):
            raise ctx.unsupported(call, f"pooled shape {pooled} returned as {out_shape}")
        out = ctx.add(
            Flatten(ctx.name(call, ".flatten"), (out.producer,), out_shape, out.fixed_type)
        )
    return TensorRef(out.layer, out.type, out_shape, pending)


def _adaptive_kernel(
    ctx: LowerContext, call: Call, ref: TensorRef, out_shape: tuple[int, ...]
) -> tuple[int, ...]:
    sizes = ref.shape[1:]
    outs = out_shape[1:]
    if len(outs) != len(sizes) or any(s % o for s, o in zip(sizes, outs, strict=True)):
        raise ctx.unsupported(
            call,
            f"adaptive pooling of {sizes} to {outs} (windows of different sizes)",
            "output sizes that divide the input sizes (e.g. 1: global average pooling)",
        )
    return tuple(s // o for s, o in zip(sizes, outs, strict=True))


def _lower_adaptive(ctx: LowerContext, call: Call) -> TensorRef:
    ref = ctx.quantised_input(call, 0)
    out_shape = _out_shape(call.output)
    return mean_pool(ctx, call, ref, _adaptive_kernel(ctx, call, ref, out_shape), out_shape)


register_lowerer(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)(_lower_adaptive)
register_function_lowerer(F.adaptive_avg_pool1d, F.adaptive_avg_pool2d)(_lower_adaptive)


@register_function_lowerer(torch.mean, torch.Tensor.mean)
def _lower_mean(ctx: LowerContext, call: Call) -> TensorRef:
    """``x.mean(dim)`` over every spatial axis (all but the batch and the channels)."""
    ref = ctx.quantised_input(call, 0)
    dim: Any = call.args[1] if len(call.args) > 1 else call.kwargs.get("dim")
    accepted = "mean over all spatial axes of a (N, C, ...) tensor, e.g. x.mean((2, 3))"
    if call.kwargs.get("dtype") is not None or dim is None:
        raise ctx.unsupported(call, "a mean over every axis or with a dtype", accepted)
    ndim = len(ref.shape) + 1
    dims = {int(d) % ndim for d in (dim if isinstance(dim, tuple | list) else (dim,))}
    if ndim < 3 or dims != set(range(2, ndim)):
        raise ctx.unsupported(
            call, f"a mean over axes {sorted(dims)} of a {ndim}-D tensor", accepted
        )
    return mean_pool(ctx, call, ref, ref.shape[1:], _out_shape(call.output))


def _trunc_type(ctx: LowerContext, call: Call) -> FixedType:
    """The output type of Brevitas' TruncIntQuant (round or floor, saturating)."""
    from brevitas.core.quant.int import TruncIntQuant
    from brevitas.utils.quant_utils import float_to_int_impl_to_enum

    out = call.output
    if not isinstance(out, IntQuantTensor):
        raise ctx.unsupported(call, "its output is not a QuantTensor", "return_quant_tensor=True")
    impls = [m for m in call.unit.trunc_quant.modules() if isinstance(m, TruncIntQuant)]
    if len(impls) != 1:
        raise ctx.unsupported(
            call, "its trunc_quant is not a TruncIntQuant", "TruncTo8bit, RoundTo8bit"
        )
    mode = str(float_to_int_impl_to_enum(impls[0].float_to_int_impl)).split(".")[-1].upper()
    rounding = {"ROUND": Rounding.RND_CONV, "FLOOR": Rounding.TRN}.get(mode)
    if rounding is None:
        raise ctx.unsupported(call, f"truncation rounds with {mode}", "ROUND or FLOOR")
    frac = int(
        scale_fracs(
            call.source,
            out.scale,
            "the truncated output",
            accepted="a power-of-two window size (the output scale is scale * 2**k / window)",
        )[0]
    )
    width = int(round(float(out.bit_width)))
    signed = bool(out.signed)
    narrow = bool(impls[0].narrow_range)
    overflow = Overflow.SAT_SYM if narrow and signed else Overflow.SAT
    return FixedType(width, width - frac, signed, rounding, overflow)


@register_lowerer(qnn.TruncAvgPool2d, qnn.TruncAdaptiveAvgPool2d)
def _lower_trunc_avg(ctx: LowerContext, call: Call) -> TensorRef:
    m = call.unit
    ref = ctx.quantised_input(call, 0)
    out_shape = _out_shape(call.output)
    if isinstance(m, qnn.TruncAdaptiveAvgPool2d):
        kernel = _adaptive_kernel(ctx, call, ref, out_shape)
    else:
        ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
        stride = m.stride if isinstance(m.stride, tuple) else (m.stride,) * 2
        if tuple(ks) != tuple(stride) or m.padding or m.ceil_mode or m.divisor_override:
            raise ctx.unsupported(
                call,
                f"kernel {ks}, stride {stride}, padding {m.padding}",
                "stride = kernel_size, no padding, ceil_mode or divisor_override",
            )
        kernel = tuple(int(k) for k in ks)
    n = int(np.prod(kernel))
    if n & (n - 1):
        raise ctx.unsupported(
            call,
            f"a window of {n} values: the truncated output's scale (scale * 2**k / {n}) is not "
            "a power of two",
            "power-of-two windows; or nn.AvgPool2d / AdaptiveAvgPool2d followed by a quantiser",
        )
    mean = mean_pool(ctx, call, ref, kernel, out_shape)
    if not m.is_trunc_quant_enabled:
        return mean
    out_type = _trunc_type(ctx, call)
    return ctx.add(
        Quant(ctx.name(call, ".trunc"), (mean.producer,), out_shape, out_type, call.source)
    )
