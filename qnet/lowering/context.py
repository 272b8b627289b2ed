"""Lowering records, the handler registries and the per-lowering context.

See :mod:`qnet.lowering` for how a handler is written. The registries are filled by the
handler modules (:mod:`qnet.lowering.layers`, :mod:`qnet.lowering.lstm`), which
:mod:`qnet.lowering` imports explicitly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qnet.errors import InternalError, UnsupportedLayerError
from qnet.hw.fixed import FixedType
from qnet.hw.graph import Layer
from qnet.hw.host import HostOp

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    from brevitas.quant_tensor import QuantTensor
    from torch import nn

__all__ = [
    "Call",
    "TensorRef",
    "LowerContext",
    "LowerFn",
    "LOWERERS",
    "FUNCTION_LOWERERS",
    "register_lowerer",
    "register_function_lowerer",
    "supported_modules",
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
    pending : tuple of Call or HostOp
        Float operations applied after ``layer`` and not lowered yet (BatchNorm, float ReLU,
        TensorNorm as module calls; elementwise ops with constants as HostOps): the next
        quantised activation turns them into a MultiThreshold, or at the model output they
        become the host postprocessing.
    error : str or None
        Why this tensor cannot be lowered (produced by an unsupported torch function); raised
        only if something consumes it.
    host : int
        For the unquantised model input: how many host preprocessing ops produced it
        (``LowerContext.pre[:host]``).
    scale, offset : ndarray of float64 or None
        Float (non-power-of-two) quantisation: the tensor's real value is
        ``fixed-point value * scale + offset``, per channel (axis 0 of ``shape``; one value for
        a per-tensor scale). ``None`` means 1 and 0 (plain fixed point). Scales are float32
        numbers or exact products of two (so exact in float64); offsets are float32 biases.
    """

    layer: str | None
    type: FixedType | None
    shape: tuple[int, ...]
    pending: tuple[Any, ...] = ()
    error: str | None = None
    host: int = 0
    scale: Any = None
    offset: Any = None

    @property
    def is_float_scaled(self) -> bool:
        """True when the real value is not the fixed-point value itself."""
        return self.scale is not None or self.offset is not None

    @property
    def is_float_accumulator(self) -> bool:
        """A per-channel float scale or a float offset: a float-scale layer's accumulator with
        no quantiser after it yet (only a per-tensor scale passes through flatten and dense)."""
        return self.offset is not None or (self.scale is not None and len(self.scale) != 1)

    @property
    def is_float_input(self) -> bool:
        return self.layer is None and self.error is None

    @property
    def producer(self) -> str:
        """The producing layer's name (every tensor past the model input has one)."""
        if self.layer is None:
            raise InternalError("the unquantised model input has no producing layer")
        return self.layer

    @property
    def fixed_type(self) -> FixedType:
        """The tensor's format (every tensor past the model input has one)."""
        if self.type is None:
            raise InternalError(f"tensor of layer {self.layer!r} has no fixed-point type")
        return self.type


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
    def unit(self) -> Any:
        """The called module, for handlers registered on a module class (always a module)."""
        if self.module is None:
            raise InternalError(f"{self.path}: a module handler was given a torch function")
        return self.module

    @property
    def class_name(self) -> str:
        if self.module is not None:
            return type(self.module).__name__
        name = getattr(self.target, "__qualname__", None) or getattr(self.target, "__name__", None)
        return str(name) if name else str(self.target)

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


def supported_modules() -> str:
    return ", ".join(sorted({c.__name__ for c in LOWERERS}))


# ------------------------------------------------------------------------------ context
class LowerContext:
    """Mutable state of one lowering: the layers so far and the tensor bindings."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.pre: list[HostOp] = []  # host preprocessing, in order
        self.meta: dict[str, Any] = {"acc_bounds": {}, "float32_inexact": []}
        self._by_name: dict[str, Layer] = {}
        self._bindings: dict[int, TensorRef] = {}
        self._keep: list[Any] = []  # keep bound objects alive so ids stay unique

    # -- graph -------------------------------------------------------------------------
    def add(self, layer: Layer) -> TensorRef:
        """Append a layer (names must be unique) and return the ref of its output."""
        if layer.name in self._by_name:
            raise InternalError(f"duplicate layer name {layer.name!r}")
        self.layers.append(layer)
        self._by_name[layer.name] = layer
        return TensorRef(layer.name, layer.out_type, layer.out_shape)

    def layer(self, name: str) -> Layer:
        return self._by_name[name]

    def name(self, call: Call, suffix: str = "") -> str:
        """A unique layer name derived from the call's path."""
        return self.unique_name((call.path or "model") + suffix)

    def unique_name(self, base: str) -> str:
        """``base``, or ``base_1``, ``base_2``, ... if taken."""
        name, i = base, 1
        while name in self._by_name:
            name, i = f"{base}_{i}", i + 1
        return name

    def record_acc_bound(self, name: str, bound: int, float_scaled: bool = False) -> None:
        """Record a layer's accumulator bound; past 2**24 lsb Brevitas' float32 is inexact
        (a float-scale layer is proven per element by the verification instead)."""
        self.meta["acc_bounds"][name] = int(bound)
        if bound >= FLOAT32_EXACT_LIMIT and not float_scaled:
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

    def host_input(self, call: Call, index: int = 0) -> TensorRef:
        """The ``index``-th input, the float model input at the head of the preprocessing chain."""
        ref = self.input(call, index)
        assert ref.is_float_input
        if ref.host != len(self.pre):
            raise self.unsupported(
                call,
                "the preprocessing of the model input forks (it reuses an earlier step's tensor)",
                "one chain of host operations from the model input to the first quantiser",
            )
        return ref

    def quantised_input(self, call: Call, index: int = 0, float_ok: bool = False) -> TensorRef:
        """The ``index``-th input, which must be a quantised tensor with no pending float op
        (and, unless ``float_ok``, a fixed-point one: no float scale or offset)."""
        ref = self.input(call, index)
        if ref.is_float_input:
            raise self.unsupported(
                call,
                "its input is the unquantised model input (float), which the hardware cannot take",
                "a quantised input: put a QuantIdentity(act_quant=..., return_quant_tensor=True) "
                "before this layer (or give it an input_quant) so the hardware input port gets "
                "the quantised tensor; float preprocessing before that quantiser runs on the host",
            )
        if ref.pending:
            names = ", ".join(p.source for p in ref.pending)
            raise self.unsupported(
                call,
                f"it consumes the float output of {names}",
                "BatchNorm / float ReLU followed directly by a QuantReLU or QuantIdentity",
            )
        if ref.is_float_scaled and not float_ok:
            raise self.unsupported(
                call,
                f"its input is the float-scaled output of layer {ref.layer!r} (a float "
                "(non-power-of-two) scale or a float bias, with no quantiser after it)",
                "a quantiser (QuantReLU / QuantIdentity) between a float-scale layer and this "
                "one, or power-of-two scales",
            )
        assert ref.type is not None and ref.layer is not None
        return ref
