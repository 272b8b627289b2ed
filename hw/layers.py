"""The hardware graph's layer kinds: small frozen dataclasses, one per kind, and their registry.

Every layer names its producers (``inputs``), has a per-sample output shape (channels-first,
no batch axis) and an output :class:`~qnet.hw.fixed.FixedType`; layers with weights hold
int64 mantissa arrays plus the ``FixedType`` they are mantissas of, and an accumulator type
sized so the accumulation cannot overflow. Each class checks its own invariants on
construction (``FormatError`` naming the layer).

Kinds are registered in :data:`LAYER_KINDS` (explicit registry, duplicates refused) so that
serialisation (:mod:`qnet.hw.graph`), the simulator, the exporters and the estimator can
dispatch on them. This module holds the core kinds; others live in their own modules (the
LSTM in :mod:`qnet.hw.lstm`), which the package ``qnet.hw`` imports explicitly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from qnet.errors import FormatError
from qnet.hw.fixed import FixedType

__all__ = [
    "Layer",
    "Input",
    "Quant",
    "Dense",
    "Conv",
    "ReLU",
    "MaxPool",
    "AvgPool",
    "Flatten",
    "Add",
    "Concat",
    "MultiThreshold",
    "LAYER_KINDS",
    "register_layer",
]

#: kind name -> layer class
LAYER_KINDS: dict[str, type[Layer]] = {}

L = TypeVar("L", bound="type[Layer]")


def register_layer(cls: L) -> L:
    """Class decorator: register a layer kind under ``cls.kind`` (duplicates are refused)."""
    kind = cls.kind
    if kind in LAYER_KINDS and LAYER_KINDS[kind] is not cls:
        raise ValueError(f"layer kind {kind!r} is already registered by {LAYER_KINDS[kind]}")
    LAYER_KINDS[kind] = cls
    return cls


def _int_array(layer: str, name: str, value: Any, ndim: int | None = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iub":
        raise FormatError(
            f"layer {layer!r}: {name} must be an integer array, got dtype {arr.dtype}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if ndim is not None and arr.ndim != ndim:
        raise FormatError(f"layer {layer!r}: {name} must have {ndim} dims, got shape {arr.shape}")
    arr.flags.writeable = False
    return arr


def _check_mantissas(layer: str, name: str, arr: np.ndarray, t: FixedType) -> None:
    if arr.size and (arr.min() < t.int_min or arr.max() > t.int_max):
        raise FormatError(
            f"layer {layer!r}: {name} mantissas [{arr.min()}, {arr.max()}] do not fit {t}"
        )


@dataclass(frozen=True, eq=False)
class Layer:
    """Base of every hardware layer.

    Attributes
    ----------
    name : str
        Unique name in the graph (usually the source module's path).
    inputs : tuple of str
        Names of the producing layers.
    out_shape : tuple of int
        Per-sample output shape (channels-first, no batch axis).
    out_type : FixedType
        Format of the output tensor.
    source : str
        Where the layer came from (e.g. ``features.0: QuantConv2d``), for error messages.
    """

    kind: ClassVar[str] = "layer"

    name: str
    inputs: tuple[str, ...]
    out_shape: tuple[int, ...]
    out_type: FixedType
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise FormatError(f"layer name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "inputs", tuple(str(i) for i in self.inputs))
        object.__setattr__(self, "out_shape", tuple(int(s) for s in self.out_shape))
        if not isinstance(self.out_type, FixedType):
            raise FormatError(f"layer {self.name!r}: out_type must be a FixedType")
        if any(s < 1 for s in self.out_shape):
            raise FormatError(f"layer {self.name!r}: bad out_shape {self.out_shape}")

    # -- helpers for subclasses ---------------------------------------------------------
    def _tuple(self, name: str, length: int | None = None) -> None:
        value = tuple(int(v) for v in getattr(self, name))
        if length is not None and len(value) != length:
            raise FormatError(
                f"layer {self.name!r}: {name} must have {length} entries, got {value}"
            )
        object.__setattr__(self, name, value)

    def arrays(self) -> dict[str, np.ndarray]:
        """The layer's array fields by name (for saving)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }

    def describe(self) -> str:
        """One-line description of the layer's parameters (for summary tables)."""
        return ""


@register_layer
@dataclass(frozen=True, eq=False)
class Input(Layer):
    """The graph input: float input is quantised once into ``out_type`` (host side)."""

    kind: ClassVar[str] = "input"


@register_layer
@dataclass(frozen=True, eq=False)
class Quant(Layer):
    """Requantise the input tensor into ``out_type`` (rounding and overflow of out_type)."""

    kind: ClassVar[str] = "quant"


@register_layer
@dataclass(frozen=True, eq=False)
class ReLU(Layer):
    """``out_type.cast(max(x, 0))``: a quantised ReLU."""

    kind: ClassVar[str] = "relu"


@register_layer
@dataclass(frozen=True, eq=False)
class Flatten(Layer):
    """Flatten channels-first (C, ...) to (C * ...), in C order. Type unchanged."""

    kind: ClassVar[str] = "flatten"


@dataclass(frozen=True, eq=False)
class _Weighted(Layer):
    """Dense or convolution: exact accumulation, then a cast from ``acc_type`` to ``out_type``.

    The accumulator holds ``sum(x * w) + bias`` exactly: its ``frac`` equals the input's plus
    the weight's fractional bits and its width is sized from the bound
    ``max|x| * sum|w| + |b|`` so it cannot overflow.
    """

    weight: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.int64))
    weight_type: FixedType = FixedType(8, 8)
    bias: np.ndarray | None = None
    bias_type: FixedType | None = None
    acc_type: FixedType = FixedType(32, 32)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "weight", _int_array(self.name, "weight", self.weight))
        _check_mantissas(self.name, "weight", self.weight, self.weight_type)
        if (self.bias is None) != (self.bias_type is None):
            raise FormatError(f"layer {self.name!r}: bias and bias_type go together")
        if self.bias is not None:
            assert self.bias_type is not None
            bias = _int_array(self.name, "bias", self.bias, 1)
            if bias.shape[0] != self.weight.shape[0]:
                raise FormatError(
                    f"layer {self.name!r}: bias has {bias.shape[0]} entries for "
                    f"{self.weight.shape[0]} outputs"
                )
            _check_mantissas(self.name, "bias", bias, self.bias_type)
            object.__setattr__(self, "bias", bias)
        if len(self.inputs) != 1:
            raise FormatError(f"layer {self.name!r}: takes one input, got {self.inputs}")

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])


@register_layer
@dataclass(frozen=True, eq=False)
class Dense(_Weighted):
    """``y = cast_out(W @ x + b)`` with ``W`` of shape (out_features, in_features)."""

    kind: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight.ndim != 2:
            raise FormatError(
                f"layer {self.name!r}: dense weight must be 2-D, got {self.weight.shape}"
            )

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def describe(self) -> str:
        return f"{self.in_features}->{self.out_features}"


@register_layer
@dataclass(frozen=True, eq=False)
class Conv(_Weighted):
    """1-D or 2-D convolution (cross-correlation, as torch), grouped and dilated as torch.

    ``weight`` has shape (out_channels, in_channels // groups, *kernel); ``stride``,
    ``padding`` (zero padding, symmetric) and ``dilation`` have one entry per spatial dim
    (``dilation`` defaults to all ones). With ``groups = g`` the input and output channels
    split into ``g`` equal consecutive blocks and output block ``i`` reads input block ``i``
    only (``groups = in_channels``: depthwise). :meth:`dense_equivalent` is the same map as
    a ``groups = 1``, ``dilation = 1`` convolution (block-diagonal, zero-inserted kernel).
    """

    kind: ClassVar[str] = "conv"

    stride: tuple[int, ...] = (1,)
    padding: tuple[int, ...] = (0,)
    groups: int = 1
    dilation: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        dims = self.weight.ndim - 2
        if dims not in (1, 2):
            raise FormatError(
                f"layer {self.name!r}: conv weight must be 3-D or 4-D, got {self.weight.shape}"
            )
        self._tuple("stride", dims)
        self._tuple("padding", dims)
        if not self.dilation:
            object.__setattr__(self, "dilation", (1,) * dims)
        self._tuple("dilation", dims)
        object.__setattr__(self, "groups", int(self.groups))
        if self.groups < 1 or self.out_features % self.groups:
            raise FormatError(
                f"layer {self.name!r}: groups={self.groups} must be >= 1 and divide the "
                f"{self.out_features} output channels"
            )
        if any(s < 1 for s in self.stride) or any(d < 1 for d in self.dilation):
            raise FormatError(
                f"layer {self.name!r}: stride {self.stride} and dilation {self.dilation} "
                "must be >= 1"
            )

    @property
    def dims(self) -> int:
        return self.weight.ndim - 2

    @property
    def kernel(self) -> tuple[int, ...]:
        """The kernel's taps per spatial dim (before dilation)."""
        return tuple(int(k) for k in self.weight.shape[2:])

    @property
    def span(self) -> tuple[int, ...]:
        """The input extent one output reads per spatial dim: ``dilation * (kernel - 1) + 1``."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation, strict=True))

    @property
    def in_channels(self) -> int:
        """All input channels (``groups`` x the channels one output reads)."""
        return int(self.weight.shape[1]) * self.groups

    @property
    def is_dense(self) -> bool:
        """True for ``groups = 1``, ``dilation = 1`` (a plain convolution)."""
        return self.groups == 1 and all(d == 1 for d in self.dilation)

    @property
    def is_depthwise(self) -> bool:
        """One input and one output channel per group (``groups = in = out channels``)."""
        return self.groups == self.in_channels == self.out_features and self.groups > 1

    def undilated(self) -> Conv:
        """The same map with ``dilation = 1``: ``dilation - 1`` zero taps between the taps.

        Exact (the extra weights are zeros); groups are kept. Returns ``self`` if undilated.
        """
        if all(d == 1 for d in self.dilation):
            return self
        cached = self.__dict__.get("_undilated")
        if cached is None:
            full = np.zeros((*self.weight.shape[:2], *self.span), dtype=np.int64)
            taps: tuple[Any, ...] = (Ellipsis, *(slice(None, None, d) for d in self.dilation))
            full[taps] = self.weight
            cached = dataclasses.replace(self, weight=full, dilation=(1,) * self.dims)
            self.__dict__["_undilated"] = cached  # frozen: cache outside the fields
        return cached

    def dense_equivalent(self) -> Conv:
        """The same map as a plain convolution (``groups = 1``, ``dilation = 1``).

        Grouped weights become block diagonal over the channels, dilated kernels get
        ``dilation - 1`` zero taps between their taps. Exact: the extra weights are zeros.
        Returns ``self`` when the layer is already plain.
        """
        if self.is_dense:
            return self
        cached = self.__dict__.get("_dense_equivalent")
        if cached is not None:
            return cached
        conv = self.undilated()
        m, cg = conv.out_features, int(conv.weight.shape[1])
        mg = m // conv.groups
        full = np.zeros((m, conv.in_channels, *conv.kernel), dtype=np.int64)
        for g in range(conv.groups):
            block = slice(g * mg, (g + 1) * mg)
            full[block, g * cg : (g + 1) * cg] = conv.weight[block]
        plain = dataclasses.replace(conv, weight=full, groups=1)
        self.__dict__["_dense_equivalent"] = plain  # frozen: cache outside the fields
        return plain

    def describe(self) -> str:
        k = "x".join(map(str, self.kernel))
        text = f"{self.in_channels}->{self.out_features} k{k} s{self.stride} p{self.padding}"
        if self.groups != 1:
            text += f" g{self.groups}"
        if any(d != 1 for d in self.dilation):
            text += f" d{self.dilation}"
        return text


@register_layer
@dataclass(frozen=True, eq=False)
class MaxPool(Layer):
    """Max pooling over windows ``kernel`` with ``stride``; no padding. Type unchanged."""

    kind: ClassVar[str] = "maxpool"

    kernel: tuple[int, ...] = (2,)
    stride: tuple[int, ...] = (2,)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._tuple("kernel")
        self._tuple("stride", len(self.kernel))

    def describe(self) -> str:
        return f"k{self.kernel} s{self.stride}"


@register_layer
@dataclass(frozen=True, eq=False)
class AvgPool(Layer):
    """Average pooling, no padding: window sum times ``1/prod(kernel)``, cast to ``out_type``.

    The window size must be a power of two so the division is an exact shift; ``out_type``
    says how the (exact) mean is rounded.
    """

    kind: ClassVar[str] = "avgpool"

    kernel: tuple[int, ...] = (2,)
    stride: tuple[int, ...] = (2,)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._tuple("kernel")
        self._tuple("stride", len(self.kernel))
        n = int(np.prod(self.kernel))
        if n & (n - 1):
            raise FormatError(
                f"layer {self.name!r}: average pooling over {n} values is not an exact shift; "
                "only power-of-two window sizes are supported"
            )

    def describe(self) -> str:
        return f"k{self.kernel} s{self.stride}"


@register_layer
@dataclass(frozen=True, eq=False)
class Add(Layer):
    """Element-wise sum of two tensors, cast to ``out_type`` (exact when wide enough)."""

    kind: ClassVar[str] = "add"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.inputs) != 2:
            raise FormatError(f"layer {self.name!r}: add takes two inputs, got {self.inputs}")


@register_layer
@dataclass(frozen=True, eq=False)
class Concat(Layer):
    """Concatenation of two or more tensors along per-sample ``axis`` (0: channels).

    Every input is cast to ``out_type`` first (exact: the lowering picks a type that holds
    every input's values), then the mantissas are concatenated in input order.
    """

    kind: ClassVar[str] = "concat"

    axis: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "axis", int(self.axis))
        if len(self.inputs) < 2:
            raise FormatError(
                f"layer {self.name!r}: concat takes two or more inputs, got {self.inputs}"
            )
        if not 0 <= self.axis < len(self.out_shape):
            raise FormatError(
                f"layer {self.name!r}: axis {self.axis} is not an axis of the per-sample shape "
                f"{self.out_shape}"
            )

    def describe(self) -> str:
        return f"{len(self.inputs)} inputs, axis {self.axis}"


@register_layer
@dataclass(frozen=True, eq=False)
class MultiThreshold(Layer):
    """A monotone step function per channel, as FINN's MultiThreshold.

    For input mantissa ``x`` of channel ``c`` (axis 0 of the per-sample shape):
    ``y = out_base + #{k : x >= thresholds[c, k]}`` where ``increasing[c]``, else
    ``y = out_base + #{k : x < thresholds[c, k]}``; ``y`` is a mantissa of ``out_type``.
    Thresholds are int64 mantissas of the input type, ascending along axis 1.
    This is how BatchNorm + quantised activation is made exact: thresholds are found by
    evaluating the very same float32 operations at the integer accumulator points.
    """

    kind: ClassVar[str] = "multithreshold"

    thresholds: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.int64))
    increasing: np.ndarray = field(default_factory=lambda: np.ones(1, bool))
    out_base: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        thr = _int_array(self.name, "thresholds", self.thresholds, 2)
        if thr.shape[1] and np.any(np.diff(thr, axis=1) < 0):
            raise FormatError(f"layer {self.name!r}: thresholds must be ascending per channel")
        if thr.shape[0] != self.out_shape[0]:
            raise FormatError(
                f"layer {self.name!r}: {thr.shape[0]} threshold rows for {self.out_shape[0]} channels"
            )
        inc = np.ascontiguousarray(np.asarray(self.increasing, dtype=bool))
        if inc.shape != (thr.shape[0],):
            raise FormatError(f"layer {self.name!r}: increasing must have shape ({thr.shape[0]},)")
        inc.flags.writeable = False
        object.__setattr__(self, "thresholds", thr)
        object.__setattr__(self, "increasing", inc)
        object.__setattr__(self, "out_base", int(self.out_base))
        lo, hi = self.out_base, self.out_base + thr.shape[1]
        if lo < self.out_type.int_min or hi > self.out_type.int_max:
            raise FormatError(f"layer {self.name!r}: outputs {lo}..{hi} do not fit {self.out_type}")

    def describe(self) -> str:
        return f"{self.thresholds.shape[1]} thresholds x {self.thresholds.shape[0]} ch"
