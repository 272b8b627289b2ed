"""Lowering of ``torch.cat`` on quantised tensors: a :class:`~qnet.hw.graph.Concat` layer.

Brevitas concatenates QuantTensors only when their scale, zero point, bit width and sign are
equal (``IntQuantTensor.cat``), so the values of every input lie on one grid: the
concatenation is exact in that type. Plain tensors taken from quantised layers
(``torch.cat([a.value, b.value], 1)``) may have different power-of-two types: the output type
is then the smallest one holding every input exactly.
"""

from __future__ import annotations

import warnings
from typing import Any

from qnet.hw.fixed import FixedType
from qnet.hw.graph import Concat
from qnet.lowering.context import Call, LowerContext, TensorRef, register_function_lowerer

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from brevitas.quant_tensor import QuantTensor

__all__: list[str] = []

_ACCEPTED = (
    "torch.cat of two or more quantised tensors of the model along a non-batch axis "
    "(e.g. the channels, dim=1)"
)


def common_type(types: list[FixedType]) -> FixedType:
    """The first type if all have the same values, else the smallest type holding them all."""
    first = types[0]
    if all(
        (t.width, t.integer, t.signed) == (first.width, first.integer, first.signed) for t in types
    ):
        return first
    frac = max(t.frac for t in types)
    lo = min(t.int_min << (frac - t.frac) for t in types)
    hi = max(t.int_max << (frac - t.frac) for t in types)
    signed = lo < 0
    if signed:
        width = max(int(hi).bit_length(), int(-lo - 1).bit_length()) + 1
    else:
        width = max(int(hi).bit_length(), 1)
    return FixedType(width, width - frac, signed)


@register_function_lowerer(torch.cat, torch.concat, torch.concatenate)
def _lower_cat(ctx: LowerContext, call: Call) -> TensorRef:
    tensors: Any = call.args[0] if call.args else call.kwargs.get("tensors")
    dim: Any = (
        call.args[1] if len(call.args) > 1 else call.kwargs.get("dim", call.kwargs.get("axis", 0))
    )
    if not isinstance(tensors, tuple | list) or not tensors:
        raise ctx.unsupported(call, "no sequence of tensors to concatenate", _ACCEPTED)
    if len(call.inputs) != len(tensors) or not all(ctx.knows(t) for t in tensors):
        raise ctx.unsupported(
            call,
            "it concatenates a tensor that is not computed by the model (a constant)",
            _ACCEPTED,
        )
    refs = [ctx.quantised_input(call, i) for i in range(len(tensors))]
    if len(refs) == 1:
        return refs[0]
    value = tensors[0].value if isinstance(tensors[0], QuantTensor) else tensors[0]
    ndim = int(value.dim())
    d = int(dim) % ndim
    if d == 0:
        raise ctx.unsupported(call, "concatenation along the batch axis", _ACCEPTED)
    axis = d - 1
    shapes = [r.shape for r in refs]
    rest = {s[:axis] + s[axis + 1 :] for s in shapes}
    if len(rest) != 1:
        raise ctx.unsupported(call, f"tensors of shapes {shapes} along axis {d}", _ACCEPTED)
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    out_type = common_type([r.fixed_type for r in refs])
    return ctx.add(
        Concat(
            ctx.name(call),
            tuple(r.producer for r in refs),
            tuple(out_shape),
            out_type,
            call.source,
            axis=axis,
        )
    )
