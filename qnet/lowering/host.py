"""Float operations the host runs: preprocessing before the first quantiser, a float tail after
the last one (see :mod:`qnet.hw.host`).

* On the raw model input (a float ref that no quantiser has seen): shape ops and elementwise
  float ops with constants become :class:`~qnet.hw.host.HostOp` s of the preprocessing chain
  (``LowerContext.pre``); the first quantiser closes it (the hardware input port).
* On a quantised tensor: the same ops (and float modules such as BatchNorm, TensorNorm, ReLU)
  are kept *pending* on the ref; the next quantised activation turns them into a
  MultiThreshold, or, at the model output, they become the postprocessing chain.

Every op is replayed in float32 exactly as torch computes it (checked by the tests against
torch on random and boundary inputs).
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np

from qnet.hw.host import HostOp, fma32, run_host
from qnet.lowering.context import Call, LowerContext, TensorRef

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from brevitas.quant_tensor import QuantTensor
    from torch import nn

__all__ = [
    "SHAPE_FUNCTIONS",
    "ELEMENTWISE_FUNCTIONS",
    "host_op_of_function",
    "host_ops_of_pending",
    "replay_pending",
    "is_tensor_norm",
]

#: torch functions that only move data (batch axis kept first).
SHAPE_FUNCTIONS: tuple[Any, ...] = tuple(
    dict.fromkeys(
        (
            torch.flatten,
            torch.Tensor.flatten,
            torch.Tensor.view,
            torch.Tensor.reshape,
            torch.reshape,
            torch.Tensor.permute,
            torch.permute,
            torch.Tensor.transpose,
            torch.transpose,
            torch.Tensor.unsqueeze,
            torch.unsqueeze,
            torch.Tensor.squeeze,
            torch.squeeze,
        )
    )
)

_MUL = (torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__)
_ADD = (torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__)
_SUB = (torch.sub, torch.Tensor.sub, torch.Tensor.__sub__)
_RSUB = (torch.rsub, torch.Tensor.__rsub__)
_DIV = (torch.div, torch.true_divide, torch.Tensor.div, torch.Tensor.__truediv__)
_RDIV = (torch.Tensor.__rtruediv__,)
_NEG = (torch.neg, torch.Tensor.neg, torch.Tensor.__neg__)
_CLAMP = (torch.clamp, torch.Tensor.clamp, torch.clip, torch.Tensor.clip)
_RELU = (torch.relu, torch.Tensor.relu, nn.functional.relu)

#: torch functions computing elementwise float math with constants.
ELEMENTWISE_FUNCTIONS: tuple[Any, ...] = tuple(
    dict.fromkeys(_MUL + _ADD + _SUB + _RSUB + _DIV + _RDIV + _NEG + _CLAMP + _RELU)
)

ACCEPTED = (
    "shape ops (view/reshape/flatten/permute/transpose/unsqueeze/squeeze keeping the batch axis "
    "first) and elementwise float32 ops with constants (+, -, *, /, neg, clamp, relu)"
)


def _value(obj: Any) -> Any:
    return obj.value if isinstance(obj, QuantTensor) else obj


def _const(ctx: LowerContext, call: Call, value: Any) -> np.ndarray:
    """A constant operand as float32, as torch casts it for a float32 computation."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | torch.Tensor):
        raise ctx.unsupported(call, f"operand {value!r} is not a number or tensor", ACCEPTED)
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() and value.dtype not in (torch.int32, torch.int64):
            raise ctx.unsupported(call, f"constant of dtype {value.dtype}", ACCEPTED)
        return value.detach().cpu().to(torch.float32).numpy()
    return np.asarray(value, dtype=np.float32)


def _operands(ctx: LowerContext, call: Call) -> tuple[int, Any]:
    """(position of the tracked tensor among the first two arguments, the other operand)."""
    args = list(call.args) + [call.kwargs[k] for k in ("other",) if k in call.kwargs]
    known = [i for i, a in enumerate(args[:2]) if ctx.knows(a)]
    if len(known) != 1 or len(args) < 2:
        raise ctx.unsupported(call, "an elementwise op between two model tensors", ACCEPTED)
    pos = known[0]
    return pos, args[1 - pos]


def host_op_of_function(ctx: LowerContext, call: Call, in_shape: tuple[int, ...]) -> HostOp:
    """The float32 HostOp of one recorded torch function applied to a tensor of ``in_shape``.

    Raises
    ------
    UnsupportedLayerError
        For other functions, two model tensors, alpha/rounding_mode/out arguments, a change of
        dtype, or a constant that broadcasts the tensor to a new shape.
    """
    fn = call.target
    out = _value(call.output)
    if not isinstance(out, torch.Tensor) or out.dtype != torch.float32:
        raise ctx.unsupported(call, "its result is not a float32 tensor", ACCEPTED)
    out_shape = tuple(int(s) for s in out.shape[1:])
    first = _value(call.args[0]) if call.args else None
    in_batch = int(first.shape[0]) if isinstance(first, torch.Tensor) and first.ndim else -1
    if int(out.shape[0]) != in_batch if out.ndim else True:
        raise ctx.unsupported(call, "it changes the batch axis", ACCEPTED)
    src = call.source
    if fn in SHAPE_FUNCTIONS:
        if int(np.prod(out_shape)) != int(np.prod(in_shape)):
            raise ctx.unsupported(call, f"reshape of {in_shape} to {out_shape}", ACCEPTED)
        if fn in (torch.Tensor.permute, torch.permute, torch.Tensor.transpose, torch.transpose):
            perm = _permutation(ctx, call, len(in_shape) + 1)
            if perm[0] != 0:
                raise ctx.unsupported(call, "it moves the batch axis", ACCEPTED)
            return HostOp("permute", shape=tuple(p - 1 for p in perm[1:]), source=src)
        return HostOp("reshape", shape=out_shape, source=src)
    if out_shape != in_shape:
        raise ctx.unsupported(call, f"a constant broadcasts {in_shape} to {out_shape}", ACCEPTED)
    extra = {k: v for k, v in call.kwargs.items() if k not in ("other", "min", "max", "inplace")}
    if extra.get("alpha", 1) != 1 or extra.get("rounding_mode") is not None or "out" in extra:
        raise ctx.unsupported(call, f"arguments {sorted(extra)}", ACCEPTED)
    if fn in _NEG:
        return HostOp("neg", source=src)
    if fn in _RELU:
        return HostOp("relu", source=src)
    if fn in _CLAMP:
        lo = call.kwargs.get("min", call.args[1] if len(call.args) > 1 else None)
        hi = call.kwargs.get("max", call.args[2] if len(call.args) > 2 else None)
        return HostOp(
            "clamp",
            None if lo is None else _const(ctx, call, lo),
            None if hi is None else _const(ctx, call, hi),
            source=src,
        )
    pos, other = _operands(ctx, call)
    c = _const(ctx, call, other)
    if fn in _MUL:
        return HostOp("mul", c, source=src)
    if fn in _ADD:
        return HostOp("add", c, source=src)
    if fn in _SUB:
        return HostOp("sub" if pos == 0 else "rsub", c, source=src)
    if fn in _RSUB:
        return HostOp("rsub" if pos == 0 else "sub", c, source=src)
    if fn in _DIV:
        return HostOp("div" if pos == 0 else "rdiv", c, source=src)
    if fn in _RDIV:  # torch computes c / x as reciprocal(x) * c here
        return HostOp("recip_mul", c, source=src)
    raise ctx.unsupported(call, "no float32 replay for this function", ACCEPTED)


def _permutation(ctx: LowerContext, call: Call, ndim: int) -> tuple[int, ...]:
    args = list(call.args[1:])
    if call.target in (torch.Tensor.transpose, torch.transpose):
        d0 = call.kwargs.get("dim0", args[0] if args else None)
        d1 = call.kwargs.get("dim1", args[1] if len(args) > 1 else None)
        if not isinstance(d0, int) or not isinstance(d1, int):
            raise ctx.unsupported(call, "transpose without two int dims", ACCEPTED)
        perm = list(range(ndim))
        perm[d0 % ndim], perm[d1 % ndim] = perm[d1 % ndim], perm[d0 % ndim]
        return tuple(perm)
    dims = call.kwargs.get("dims", args[0] if len(args) == 1 else tuple(args))
    dims = tuple(dims) if isinstance(dims, tuple | list | torch.Size) else (dims,)
    if len(dims) != ndim or not all(isinstance(d, int) for d in dims):
        raise ctx.unsupported(call, f"permute dims {dims!r}", ACCEPTED)
    return tuple(d % ndim for d in dims)


# ------------------------------------------------------------------ float modules
def is_tensor_norm(module: Any) -> bool:
    """brevitas_examples' TensorNorm (a scalar float affine with running statistics)."""
    from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm

    return isinstance(module, TensorNorm)


def _batchnorm_ops(module: nn.modules.batchnorm._BatchNorm, ndim: int, src: str) -> HostOp:
    """Eval BatchNorm as torch's CPU kernel computes it: ``fma(x, alpha, beta)`` (float32)."""
    with torch.no_grad():
        mean = module.running_mean.detach().float().numpy()
        var = module.running_var.detach().float().numpy()
        c = mean.shape[0]
        w = (
            module.weight.detach().float().numpy()
            if module.weight is not None
            else np.ones(c, np.float32)
        )
        b = (
            module.bias.detach().float().numpy()
            if module.bias is not None
            else np.zeros(c, np.float32)
        )
    invstd = (np.float32(1) / np.sqrt(var + np.float32(module.eps))).astype(np.float32)
    alpha = (invstd * w).astype(np.float32)
    beta = fma32(-mean, alpha, b)
    shape = (c,) + (1,) * max(ndim - 2, 0)
    return HostOp("fma", alpha.reshape(shape), beta.reshape(shape), source=src)


def _tensor_norm_ops(module: Any, src: str) -> tuple[HostOp, ...]:
    """TensorNorm (eval): ``((x - mean) / (var + eps) ** 0.5) * weight + bias``."""
    with torch.no_grad():
        mean = module.running_mean.detach().float().numpy()
        denom = (module.running_var + module.eps).pow(0.5).detach().float().numpy()
        w = module.weight.detach().float().numpy()
        b = module.bias.detach().float().numpy()
    return (
        HostOp("sub", mean, source=src),
        HostOp("div", denom, source=src),
        HostOp("mul", w, source=src),
        HostOp("add", b, source=src),
    )


def host_ops_of_module(ctx: LowerContext, call: Call) -> tuple[HostOp, ...] | None:
    """The float32 HostOps of a float module call, or None if it has none."""
    m = call.module
    src = call.source
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        if m.training or not m.track_running_stats:
            raise ctx.unsupported(call, "BatchNorm without running statistics in eval mode")
        ndim = _value(call.output).ndim
        return (_batchnorm_ops(m, ndim, src),)
    if isinstance(m, nn.ReLU):
        return (HostOp("relu", source=src),)
    if isinstance(m, nn.Identity | nn.Dropout | nn.Dropout1d | nn.Dropout2d):
        return ()
    if m is not None and is_tensor_norm(m):
        if m.training:
            raise ctx.unsupported(call, "TensorNorm in training mode; call model.eval()")
        return _tensor_norm_ops(m, src)
    return None


def host_ops_of_pending(ctx: LowerContext, pending: tuple[Any, ...]) -> tuple[HostOp, ...]:
    """Pending float ops (module Calls or HostOps) -> HostOps for the host to run."""
    ops: list[HostOp] = []
    for p in pending:
        if isinstance(p, HostOp):
            ops.append(p)
            continue
        got = host_ops_of_module(ctx, p)
        if got is None:
            raise ctx.unsupported(
                p,
                "a float module after the last quantiser with no float32 replay",
                "BatchNorm1d/2d, TensorNorm, ReLU, Dropout, and " + ACCEPTED,
            )
        ops.extend(got)
    return tuple(ops)


def replay_pending(pending: tuple[Any, ...], x: torch.Tensor) -> torch.Tensor:
    """Apply pending float ops to a float32 torch tensor (modules by torch, HostOps in NumPy)."""
    for p in pending:
        if isinstance(p, HostOp):
            x = torch.from_numpy(run_host((p,), x.detach().numpy()))
        else:
            x = _value(p.target(x))
    return x


def float_ref(ref: TensorRef, shape: tuple[int, ...], host: int) -> TensorRef:
    """The ref of a preprocessing result (float, before the first quantiser)."""
    return TensorRef(None, None, shape, host=host)
