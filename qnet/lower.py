"""``qnet.lower``: Brevitas model -> :class:`~qnet.hw.graph.HwGraph`, exactly.

How it works
------------
1. **Capture.** The model (eval mode) runs once on ``example_input`` under forward hooks and a
   :class:`torch.overrides.TorchFunctionMode`. Every call of a *unit* module (a module whose
   class has a registered lowering handler, or a leaf module) is recorded with the objects it
   received and returned; sub-modules of a unit are internal to it. Torch functions called
   outside units (``torch.flatten(x, 1)``, ``x + y`` on QuantTensors, ``x.value[:, -1]``) are
   recorded too when one of their arguments is a tensor produced by an earlier record.
   Records are in execution order, which is a topological order.
2. **Lowering.** Each record is handed to the handler registered for its module class (or
   torch function). Tensors are connected by object identity (a QuantTensor and its
   ``.value`` both resolve to the same :class:`TensorRef`).

Writing a handler (e.g. ``qnet/lower_lstm.py`` for ``brevitas.nn.QuantLSTM``)
------------------------------------------------------------------------------
::

    from qnet.lower import Call, LowerContext, TensorRef, register_lowerer

    @register_lowerer(QuantLSTM)            # exact class match; duplicates raise ValueError
    def _lower_lstm(ctx: LowerContext, call: Call) -> TensorRef | None:
        x = ctx.quantised_input(call, 0)     # TensorRef of the first tensor argument
        ...                                  # read call.module, call.args, call.output
        layer = MyLstmLayer(name=ctx.name(call), inputs=(x.layer,), out_shape=...,
                            out_type=..., source=call.source, ...)
        ref = ctx.add(layer)                 # appends to the graph, returns its TensorRef
        ctx.bind(call.output[1][0], ref2)    # optional: bind extra output objects yourself
        return ref                           # bound to call.output (and call.output[0] /
                                             # .value when the output is a tuple/QuantTensor)

* ``Call`` fields: ``path`` (module path such as ``'features.3'``, or
  ``'<parent>:flatten#0'`` for torch functions), ``target`` (the module or the function),
  ``module`` (the module, or None), ``args``/``kwargs`` (objects recorded at run time, batch =
  example input), ``output`` (returned object), ``inputs`` (a ``TensorRef`` per tensor-like
  argument, in argument order), ``source`` (``'features.3: QuantConv2d'`` for messages).
* Return ``None`` for an identity (the output is bound to ``inputs[0]``, e.g. Dropout).
* Raise with ``ctx.unsupported(call, why, accepted)`` (an :class:`UnsupportedLayerError`
  naming the path, the class and what would be accepted).
* Helpers: :func:`fixed_type_of` (QuantTensor + quantiser proxy -> ``FixedType``),
  :func:`weight_mantissas` (per-tensor/per-channel power-of-two weights -> int64 mantissas
  and one ``FixedType``), :func:`acc_type_for` (exact accumulator type and its bound).
* Torch functions: ``@register_function_lowerer(torch.Tensor.__getitem__)`` with the same
  handler signature (``call.module`` is None, ``call.target`` the function).
* Float accumulators: a ``TensorRef`` whose ``pending`` holds float modules (BatchNorm, ReLU)
  not yet lowered; the next quantised activation turns them into a MultiThreshold.

Every accumulator whose bound reaches 2**24 lsb (where Brevitas' float32 arithmetic stops
being exact) is listed in ``graph.meta['float32_inexact']``; ``graph.meta['acc_bounds']`` gives
each weighted layer's bound.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from qnet._callable import make_module_callable
from qnet.errors import CheckpointError, UnsupportedLayerError
from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import (
    HwGraph,
    Input,
    Layer,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from brevitas.quant_tensor import IntQuantTensor, QuantTensor
    from torch import nn
    from torch.overrides import TorchFunctionMode

__all__ = [
    "lower",
    "lower_checkpoint",
    "simulate_checkpoint",
    "SimulationReport",
    "Call",
    "TensorRef",
    "LowerContext",
    "LowerFn",
    "LOWERERS",
    "FUNCTION_LOWERERS",
    "register_lowerer",
    "register_function_lowerer",
    "fixed_type_of",
    "weight_mantissas",
    "acc_type_for",
    "FLOAT32_EXACT_LIMIT",
]

#: Brevitas computes in float32: integer partial sums are exact up to this magnitude.
FLOAT32_EXACT_LIMIT = 2**24


# ------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class TensorRef:
    """What the lowering knows about one tensor of the model.

    Attributes
    ----------
    layer : str or None
        The HwGraph layer producing it (None for the raw float model input).
    type : FixedType or None
        Its format (the producing layer's ``out_type``).
    shape : tuple of int
        Per-sample shape (no batch axis).
    pending : tuple of Call
        Float modules applied after ``layer`` and not lowered yet (BatchNorm, float ReLU).
    error : str or None
        Why this tensor cannot be lowered (produced by an unsupported torch function); raised
        only if something consumes it.
    """

    layer: str | None
    type: FixedType | None
    shape: tuple[int, ...]
    pending: tuple[Call, ...] = ()
    error: str | None = None

    @property
    def is_float_input(self) -> bool:
        return self.layer is None and self.error is None


@dataclass(frozen=True, eq=False)
class Call:
    """One recorded call of a unit module or of a torch function (see module docstring)."""

    path: str
    target: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any
    inputs: tuple[TensorRef, ...] = ()

    @property
    def module(self) -> nn.Module | None:
        return self.target if isinstance(self.target, nn.Module) else None

    @property
    def class_name(self) -> str:
        if self.module is not None:
            return type(self.module).__name__
        return getattr(self.target, "__qualname__", None) or getattr(
            self.target, "__name__", str(self.target)
        )

    @property
    def source(self) -> str:
        return f"module '{self.path}' ({self.class_name})"


#: Handler signature: (context, call) -> TensorRef of the call's output, or None (identity).
LowerFn = Callable[["LowerContext", Call], "TensorRef | None"]
#: module class -> handler (exact class match)
LOWERERS: dict[type, LowerFn] = {}
#: torch function -> handler
FUNCTION_LOWERERS: dict[Any, LowerFn] = {}


def register_lowerer(*classes: type) -> Callable[[LowerFn], LowerFn]:
    """Decorator: register the lowering handler of module classes (duplicates refused)."""

    def deco(fn: LowerFn) -> LowerFn:
        for cls in classes:
            if cls in LOWERERS:
                raise ValueError(f"a lowering handler for {cls.__name__} is already registered")
            LOWERERS[cls] = fn
        return fn

    return deco


def register_function_lowerer(*functions: Any) -> Callable[[LowerFn], LowerFn]:
    """Decorator: register the lowering handler of torch functions (duplicates refused)."""

    def deco(fn: LowerFn) -> LowerFn:
        for func in functions:
            if func in FUNCTION_LOWERERS:
                raise ValueError(f"a lowering handler for {func} is already registered")
            FUNCTION_LOWERERS[func] = fn
        return fn

    return deco


def _supported_modules() -> str:
    return ", ".join(sorted({c.__name__ for c in LOWERERS}))


# ------------------------------------------------------------------------------ context
class LowerContext:
    """Mutable state of one lowering: the layers so far and the tensor bindings."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.meta: dict[str, Any] = {"acc_bounds": {}, "float32_inexact": []}
        self._by_name: dict[str, Layer] = {}
        self._bindings: dict[int, TensorRef] = {}
        self._keep: list[Any] = []  # keep bound objects alive so ids stay unique

    # -- graph -------------------------------------------------------------------------
    def add(self, layer: Layer) -> TensorRef:
        """Append a layer (names must be unique) and return the ref of its output."""
        if layer.name in self._by_name:
            raise UnsupportedLayerError(f"internal: duplicate layer name {layer.name!r}")
        self.layers.append(layer)
        self._by_name[layer.name] = layer
        return TensorRef(layer.name, layer.out_type, layer.out_shape)

    def layer(self, name: str) -> Layer:
        return self._by_name[name]

    def name(self, call: Call, suffix: str = "") -> str:
        """A unique layer name derived from the call's path."""
        base = (call.path or "model") + suffix
        name, i = base, 1
        while name in self._by_name:
            name, i = f"{base}_{i}", i + 1
        return name

    def record_acc_bound(self, name: str, bound: int) -> None:
        self.meta["acc_bounds"][name] = int(bound)
        if bound >= FLOAT32_EXACT_LIMIT:
            self.meta["float32_inexact"].append(name)

    # -- bindings ----------------------------------------------------------------------
    def bind(self, obj: Any, ref: TensorRef) -> None:
        """Associate a run-time object (tensor, QuantTensor, tuple) with a ref."""
        if obj is None:
            return
        self._keep.append(obj)
        self._bindings[id(obj)] = ref
        if isinstance(obj, QuantTensor):
            self._keep.append(obj.value)
            self._bindings[id(obj.value)] = ref
        elif isinstance(obj, tuple | list) and obj and id(obj[0]) not in self._bindings:
            self.bind(obj[0], ref)

    def lookup(self, obj: Any) -> TensorRef | None:
        ref = self._bindings.get(id(obj))
        if ref is None and isinstance(obj, QuantTensor):
            ref = self._bindings.get(id(obj.value))
        return ref

    def knows(self, obj: Any) -> bool:
        return self.lookup(obj) is not None

    # -- inputs ------------------------------------------------------------------------
    def unsupported(self, call: Call, why: str, accepted: str = "") -> UnsupportedLayerError:
        """The error to raise for an unsupported module or configuration."""
        msg = f"{call.source}: {why}"
        if accepted:
            msg += f"; accepted: {accepted}"
        return UnsupportedLayerError(msg)

    def input(self, call: Call, index: int = 0) -> TensorRef:
        """The ``index``-th tensor input; raises if it comes from an unsupported op."""
        if index >= len(call.inputs):
            raise self.unsupported(call, f"expected at least {index + 1} tensor input(s)")
        ref = call.inputs[index]
        if ref.error is not None:
            raise self.unsupported(call, f"its input cannot be lowered: {ref.error}")
        return ref

    def quantised_input(self, call: Call, index: int = 0) -> TensorRef:
        """The ``index``-th input, which must be a quantised tensor with no pending float op."""
        ref = self.input(call, index)
        if ref.is_float_input:
            raise self.unsupported(
                call,
                "its input is the unquantised model input",
                "a QuantIdentity as the model's first layer (it quantises the input)",
            )
        if ref.pending:
            names = ", ".join(p.source for p in ref.pending)
            raise self.unsupported(
                call,
                f"it consumes the float output of {names}",
                "BatchNorm / float ReLU followed directly by a QuantReLU or QuantIdentity",
            )
        assert ref.type is not None and ref.layer is not None
        return ref


# ------------------------------------------------------------------------------ capture
def _flat_objects(obj: Any) -> Iterator[Any]:
    if isinstance(obj, QuantTensor | torch.Tensor):
        yield obj
    elif isinstance(obj, tuple | list):
        for item in obj:
            yield from _flat_objects(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _flat_objects(item)


def _has_tensor(obj: Any) -> bool:
    return any(True for _ in _flat_objects(obj))


class _Recorder(TorchFunctionMode):
    """Records unit-module calls (via hooks) and torch functions on known tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.records: list[Call] = []
        self.depth = 0  # number of unit modules on the stack
        self.stack: list[str] = []
        self.known: set[int] = set()
        self.keep: list[Any] = []
        self.counts: dict[str, int] = {}
        self.handles: list[Any] = []
        units: set[int] = set()
        inside_unit: set[int] = set()
        for path, module in model.named_modules():
            if id(module) in inside_unit:
                continue
            is_unit = type(module) in LOWERERS or not any(True for _ in module.children())
            if is_unit and module is not model or (is_unit and type(module) in LOWERERS):
                units.add(id(module))
                for sub in module.modules():
                    if sub is not module:
                        inside_unit.add(id(sub))
            if id(module) in inside_unit:
                continue
            self.handles.append(
                module.register_forward_pre_hook(
                    self._pre(path, id(module) in units), with_kwargs=True
                )
            )
            self.handles.append(
                module.register_forward_hook(
                    self._post(path, id(module) in units), with_kwargs=True
                )
            )
        self._pending: list[tuple[Any, Any]] = []

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def mark_known(self, obj: Any) -> None:
        for item in _flat_objects(obj):
            self.keep.append(item)
            self.known.add(id(item))
            if isinstance(item, QuantTensor):
                self.keep.append(item.value)
                self.known.add(id(item.value))

    def is_known(self, obj: Any) -> bool:
        return any(
            id(item) in self.known
            or (isinstance(item, QuantTensor) and id(item.value) in self.known)
            for item in _flat_objects(obj)
        )

    def _pre(self, path: str, unit: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self.stack.append(path)
            if unit:
                self.depth += 1
                self._pending.append((args, kwargs))

        return hook

    def _post(self, path: str, unit: bool) -> Callable[..., None]:
        def hook(
            module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
        ) -> None:
            self.stack.pop()
            if unit:
                self.depth -= 1
                pre_args, pre_kwargs = self._pending.pop()
                if self.depth == 0:
                    self.records.append(
                        Call(path, module, tuple(pre_args), dict(pre_kwargs), output)
                    )
                    self.mark_known(output)

        return hook

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0 and _has_tensor(out) and self.is_known((args, kwargs)):
            fname = getattr(func, "__name__", str(func))
            parent = self.stack[-1] if self.stack else ""
            key = f"{parent}:{fname}"
            n = self.counts.get(key, 0)
            self.counts[key] = n + 1
            self.records.append(Call(f"{key}#{n}", func, tuple(args), dict(kwargs), out))
            self.mark_known(out)
        return out


# ------------------------------------------------------------------------------ types
def _is_pow2(value: float) -> bool:
    m, _ = math.frexp(value)
    return value > 0 and m == 0.5


def _scale_frac(call: Call, scale: Any, what: str, per_channel_ok: bool = False) -> np.ndarray:
    """Fractional bits of a power-of-two scale tensor (per element), or raise."""
    s = np.asarray(torch.as_tensor(scale).detach().cpu().double().numpy()).reshape(-1)
    if s.size != 1 and not per_channel_ok:
        raise UnsupportedLayerError(
            f"{call.source}: {what} has a per-channel scale ({s.size} values); accepted: a "
            "per-tensor power-of-two scale for activations (per-channel scales are accepted for weights)"
        )
    fracs = []
    for v in s:
        if not np.isfinite(v) or not _is_pow2(float(v)):
            raise UnsupportedLayerError(
                f"{call.source}: {what} has scale {float(v)!r}, not a power of two; accepted: power-of-two "
                "scales (Brevitas *FixedPoint quantisers, restrict_scaling_type=POWER_OF_TWO)"
            )
        fracs.append(-(math.frexp(float(v))[1] - 1))
    return np.asarray(fracs, dtype=np.int64)


_ROUNDING = {"ROUND": Rounding.RND_CONV, "FLOOR": Rounding.TRN, "ROUND_TO_ZERO": Rounding.TRN_ZERO}


def _rounding(call: Call, proxy: Any, what: str) -> Rounding:
    """Rounding of a quantiser, read from its actual ``IntQuant.float_to_int_impl`` module.

    (The proxy's ``rounding_mode`` reads the injector's ``float_to_int_impl_type``, which a
    ``.let(float_to_int_impl=...)`` override leaves stale.)
    """
    from brevitas.core.quant.int_base import IntQuant
    from brevitas.utils.quant_utils import float_to_int_impl_to_enum

    impls = [m.float_to_int_impl for m in proxy.modules() if isinstance(m, IntQuant)]
    modes = {str(float_to_int_impl_to_enum(impl)).split(".")[-1].upper() for impl in impls}
    if not impls:
        mode = getattr(proxy, "rounding_mode", None)
        modes = {str(mode).split(".")[-1].upper()}
    if len(modes) != 1 or next(iter(modes)) not in _ROUNDING:
        raise UnsupportedLayerError(
            f"{call.source}: {what} rounds with {sorted(modes)}; accepted: ROUND (half to even), "
            "FLOOR, ROUND_TO_ZERO"
        )
    return _ROUNDING[next(iter(modes))]


def fixed_type_of(call: Call, qt: Any, proxy: Any, what: str) -> FixedType:
    """The :class:`FixedType` of a run-time QuantTensor produced by the quantiser ``proxy``.

    Power-of-two per-tensor scale, zero point 0, rounding ROUND (-> RND_CONV) / FLOOR (-> TRN)
    / ROUND_TO_ZERO (-> TRN_ZERO), saturation (narrow signed -> SAT_SYM); else
    :class:`UnsupportedLayerError`.
    """
    if not isinstance(qt, IntQuantTensor):
        raise UnsupportedLayerError(
            f"{call.source}: {what} is not an integer-quantised tensor ({type(qt).__name__}); "
            "accepted: Brevitas integer quantisers with power-of-two scales"
        )
    zp = torch.as_tensor(qt.zero_point).detach()
    if bool((zp != 0).any()):
        raise UnsupportedLayerError(
            f"{call.source}: {what} has a non-zero zero point; accepted: zero point 0 (symmetric quantisers)"
        )
    frac = int(_scale_frac(call, qt.scale, what)[0])
    width = int(round(float(torch.as_tensor(qt.bit_width))))
    signed = bool(qt.signed)
    narrow = bool(getattr(proxy, "is_narrow_range", False))
    if narrow and not signed:
        raise UnsupportedLayerError(
            f"{call.source}: {what} is unsigned with narrow range; accepted: narrow range only for signed quantisers"
        )
    overflow = Overflow.SAT_SYM if narrow else Overflow.SAT
    return FixedType(width, width - frac, signed, _rounding(call, proxy, what), overflow)


def weight_mantissas(call: Call, qt: Any, what: str = "weight") -> tuple[np.ndarray, FixedType]:
    """Integer mantissas and one FixedType for a quantised weight or bias tensor.

    Per-channel power-of-two scales (along axis 0) are brought to the finest one by exact left
    shifts, so one FixedType describes every channel.
    """
    if not isinstance(qt, IntQuantTensor):
        raise UnsupportedLayerError(
            f"{call.source}: the {what} is not quantised ({type(qt).__name__}); accepted: an integer "
            f"{what} quantiser with power-of-two scale"
            + (" (e.g. bias_quant=Int16Bias) or bias=False" if what == "bias" else "")
        )
    if bool((torch.as_tensor(qt.zero_point).detach() != 0).any()):
        raise UnsupportedLayerError(
            f"{call.source}: the {what} has a non-zero zero point; accepted: zero point 0"
        )
    value = qt.value.detach().double().cpu().numpy()
    scale = torch.as_tensor(qt.scale).detach().double().cpu().numpy()
    fracs = _scale_frac(call, scale, what, per_channel_ok=True)
    frac = int(fracs.max())
    full = np.broadcast_to(np.asarray(scale, np.float64), value.shape) if scale.size > 1 else None
    if full is None:
        mant = np.ldexp(value, frac)
    else:
        mant = np.ldexp(value, frac)  # scale folded in: value * 2**frac is an integer per element
    if not np.array_equal(mant, np.round(mant)):
        raise UnsupportedLayerError(
            f"{call.source}: the {what} values are not on their quantisation grid"
        )
    mant = mant.astype(np.int64)
    bits = int(round(float(torch.as_tensor(qt.bit_width)))) + int(fracs.max() - fracs.min())
    need = max(int(np.abs(mant).max()).bit_length() + 1 if mant.size else 1, 2)
    width = max(bits, need)
    return mant, FixedType(width, width - frac, True)


def _bits_signed(lo: int, hi: int) -> int:
    return max(int(hi).bit_length(), int(-lo - 1).bit_length() if lo < 0 else 0) + 1


def acc_type_for(
    in_type: FixedType,
    weight: np.ndarray,
    weight_type: FixedType,
    bias: np.ndarray | None,
    bias_type: FixedType | None,
) -> tuple[FixedType, int]:
    """Exact accumulator type for ``sum(x * w) + b`` and the bound of its |partial sums| (lsb).

    ``weight`` has shape (out, ...). The range is computed per output from the signs of the
    weights and the input range, so the type cannot overflow; the bound (on every partial sum,
    any order) is ``max|x| * sum|w| + |b|``.
    """
    prod_frac = in_type.frac + weight_type.frac
    frac = max(prod_frac, bias_type.frac if bias_type is not None else prod_frac)
    shift_p = frac - prod_frac
    w = weight.reshape(weight.shape[0], -1).astype(object)
    x_lo, x_hi = in_type.int_min, in_type.int_max
    pos = np.where(w > 0, w, 0).sum(axis=1)
    neg = np.where(w < 0, w, 0).sum(axis=1)
    hi = (pos * x_hi + neg * x_lo) * (1 << shift_p)
    lo = (pos * x_lo + neg * x_hi) * (1 << shift_p)
    abs_bound = (np.abs(w).sum(axis=1) * max(abs(x_lo), abs(x_hi))) * (1 << shift_p)
    if bias is not None and bias_type is not None:
        b = bias.astype(object) * (1 << (frac - bias_type.frac))
        hi, lo = hi + b, lo + b
        abs_bound = abs_bound + np.abs(b)
    width = max(_bits_signed(int(min(lo)), int(max(hi))), 2)
    return FixedType(width, width - frac, True), int(max(abs_bound))


# ------------------------------------------------------------------------------ driver
def _example_tensor(example_input: Any) -> torch.Tensor:
    x = torch.as_tensor(
        np.asarray(example_input) if not isinstance(example_input, torch.Tensor) else example_input
    )
    return x.float()


def lower(model: nn.Module, example_input: Any) -> HwGraph:
    """Lower a Brevitas model to an exact :class:`HwGraph`.

    Parameters
    ----------
    model : torch.nn.Module
        A Brevitas model built from supported layers (see :data:`LOWERERS`); it is put in eval
        mode.
    example_input : tensor or array
        One batch (N, *in_shape) of float input; only shapes matter (N = 1 is enough).

    Returns
    -------
    HwGraph

    Raises
    ------
    UnsupportedLayerError
        For a module, function or quantiser with no exact lowering, naming the module path,
        its class and what would be accepted.
    """
    model.eval()
    x = _example_tensor(example_input)
    if x.ndim < 2:
        x = x[None]
    recorder = _Recorder(model)
    recorder.mark_known(x)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            with recorder:
                output = model(x)
    finally:
        recorder.remove()
    ctx = LowerContext()
    ctx.bind(x, TensorRef(None, None, tuple(x.shape[1:])))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        for rec in recorder.records:
            inputs = tuple(
                ref
                for ref in (ctx.lookup(o) for o in _flat_objects((rec.args, rec.kwargs)))
                if ref is not None
            )
            call = dataclasses.replace(rec, inputs=inputs)
            if call.module is not None:
                handler = LOWERERS.get(type(call.module))
                if handler is None:
                    raise ctx.unsupported(
                        call, "no exact lowering for this module", _supported_modules()
                    )
                result = handler(ctx, call)
            else:
                handler = FUNCTION_LOWERERS.get(call.target)
                if handler is None:
                    result = TensorRef(
                        None,
                        None,
                        (),
                        error=f"torch function {call.class_name} at {call.path} has no exact lowering "
                        "(accepted in forward(): flatten/reshape to (N, -1), + of two quantised tensors)",
                    )
                else:
                    result = handler(ctx, call)
            if result is None:
                result = ctx.input(call, 0)
            ctx.bind(call.output, result)
    out_obj = output[0] if isinstance(output, tuple | list) else output
    out_ref = ctx.lookup(out_obj)
    if out_ref is None or out_ref.error is not None or out_ref.layer is None or out_ref.pending:
        why = (
            out_ref.error
            if out_ref is not None and out_ref.error
            else "it is not produced by a lowered layer"
        )
        if out_ref is not None and out_ref.pending:
            why = "it is the float output of " + ", ".join(p.source for p in out_ref.pending)
        raise UnsupportedLayerError(f"the model output cannot be lowered: {why}")
    layers = _prune(ctx.layers, out_ref.layer)
    meta = dict(ctx.meta)
    meta["float32_inexact"] = [
        n for n in meta["float32_inexact"] if any(layer.name == n for layer in layers)
    ]
    meta["source"] = type(model).__name__
    return HwGraph(tuple(layers), meta)


def _prune(layers: list[Layer], output: str) -> list[Layer]:
    """Keep the ancestors of ``output`` (in order); ``output`` ends up last."""
    needed = {output}
    for layer in reversed(layers):
        if layer.name in needed:
            needed.update(layer.inputs)
    kept = [layer for layer in layers if layer.name in needed]
    if kept[-1].name != output:
        raise UnsupportedLayerError(f"internal: output layer {output!r} is not last")
    if not isinstance(kept[0], Input) or sum(isinstance(layer, Input) for layer in kept) != 1:
        raise UnsupportedLayerError(
            "the model must have exactly one input quantised by a QuantIdentity"
        )
    return kept


def lower_checkpoint(path_or_ckpt: Any) -> HwGraph:
    """Load a qnet checkpoint (path or loaded object) and lower its model.

    The example input is zeros of shape ``(1, *config.in_shape)``.
    """
    ckpt = path_or_ckpt
    if isinstance(path_or_ckpt, str | os.PathLike):
        from qnet.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path_or_ckpt)
    model = getattr(ckpt, "model", None)
    config = getattr(ckpt, "config", None)
    if model is None or config is None:
        raise CheckpointError(f"{path_or_ckpt!r} is not a qnet checkpoint (no model/config)")
    graph = lower(model, torch.zeros((1, *config.in_shape)))
    meta = dict(graph.meta)
    meta["config"] = config.to_dict()
    return HwGraph(graph.layers, meta)


@dataclass(frozen=True)
class SimulationReport:
    """Simulator vs Brevitas on one data split (see :func:`simulate_checkpoint`)."""

    split: str
    samples: int
    simulator_accuracy: float
    brevitas_accuracy: float
    exact_outputs: int
    total_outputs: int
    float32_inexact: tuple[str, ...]


def simulate_checkpoint(
    path_or_ckpt: Any,
    data: str | None = None,
    split: str = "test",
    seed: int = 0,
    batch_size: int = 1024,
) -> SimulationReport:
    """Run the simulator and Brevitas on a data split of a checkpoint's data set and compare.

    ``data`` defaults to the data set the checkpoint was trained on; ``split`` is ``test``,
    ``val`` or ``train``.
    """
    from qnet.checkpoint import load_checkpoint
    from qnet.data import checkpoint_split
    from qnet.hw.simulator import simulate

    ckpt = (
        load_checkpoint(path_or_ckpt)
        if isinstance(path_or_ckpt, str | os.PathLike)
        else path_or_ckpt
    )
    graph = lower_checkpoint(ckpt)
    dataset, x, y = checkpoint_split(ckpt, data, split, seed)
    sim_correct = brev_correct = exact = total = 0
    model = ckpt.model.eval()
    for start in range(0, len(x), batch_size):
        xb = np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)
        yb = y[start : start + batch_size]
        got = simulate(graph, xb.astype(np.float64))
        with torch.no_grad():
            out = model(torch.from_numpy(xb))
        want = (out.value if isinstance(out, QuantTensor) else out).double().numpy()
        sim_correct += int((got.argmax(1) == yb).sum())
        brev_correct += int((want.argmax(1) == yb).sum())
        exact += int((got == want).sum())
        total += want.size
    n = max(len(x), 1)
    return SimulationReport(
        split,
        len(x),
        sim_correct / n,
        brev_correct / n,
        exact,
        total,
        tuple(graph.meta.get("float32_inexact", ())),
    )


# ------------------------------------------------------------------------------ handlers
# The built-in handlers live in qnet/lowering/layers.py; the LSTM's in qnet/lower_lstm.py.
importlib.import_module("qnet.lowering.layers")
if importlib.util.find_spec("qnet.lower_lstm") is not None:
    importlib.import_module("qnet.lower_lstm")


make_module_callable(__name__, lower)
