"""``HwGraph``: the hardware graph, one exact description of what the hardware computes.

An :class:`HwGraph` is an ordered list of small frozen layer objects (topological order).
Every layer names its producers (``inputs``), has a per-sample output shape (channels-first,
no batch axis) and an output :class:`~qnet.hw.fixed.FixedType`; layers with weights hold
int64 mantissa arrays plus the ``FixedType`` they are mantissas of, and an accumulator type
sized so the accumulation cannot overflow.

Tensors flow between layers as int64 mantissas of the producer's ``out_type``.

Layer kinds are registered in :data:`LAYER_KINDS` (explicit registry, duplicates refused) so
that serialisation, the simulator, the exporters and the estimator can dispatch on them. This
module registers the core kinds; other kinds live in their own modules (the LSTM in
:mod:`qnet.hw.lstm`), which the package ``qnet.hw`` imports explicitly, so the registry is
complete whenever any ``qnet.hw`` module can be used (importing ``qnet.hw.graph`` runs
``qnet/hw/__init__.py`` first). This module imports none of them: no import cycle.
The graph saves to one ``.npz`` file (arrays + a JSON header) and loads without torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from qnet.errors import FormatError
from qnet.hw.atomic import atomic_file
from qnet.hw.fixed import FixedType
from qnet.hw.host import WIDE_OPS, HostOp, host_ops_from_json, host_ops_to_json, run_host

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
    "HwGraph",
    "LAYER_KINDS",
    "register_layer",
    "GRAPH_FORMAT_VERSION",
]

GRAPH_FORMAT_VERSION = 1

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


# ---------------------------------------------------------------------------- graph
def _encode(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, FixedType):
        return {"__fixed__": value.ap_str()}
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, tuple | list):
        return [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise FormatError(f"cannot save field {key!r} of type {type(value).__name__}")


def _decode(value: Any, arrays: Any, path: str) -> Any:
    if isinstance(value, dict):
        if "__fixed__" in value:
            return FixedType.parse(value["__fixed__"])
        if "__array__" in value:
            key = value["__array__"]
            if key not in arrays:
                raise FormatError(f"{path}: array {key!r} is missing")
            return np.array(arrays[key])
        raise FormatError(f"{path}: unexpected object {value!r}")
    if isinstance(value, list):
        return tuple(_decode(v, arrays, path) for v in value)
    return value


@dataclass(frozen=True, eq=False)
class HwGraph:
    """An ordered (topologically sorted) hardware graph.

    Attributes
    ----------
    layers : tuple of Layer
        The layers; the first is the single :class:`Input`, the last produces the output.
    meta : dict
        Free-form JSON-safe metadata (model kind, source, qnet version, ...).
    pre : tuple of HostOp
        Host preprocessing (float32) applied to the model input before the input layer
        quantises it (see :mod:`qnet.hw.host`); empty when the model quantises its raw input.
    post : tuple of HostOp
        Host postprocessing (float32) applied to the hardware output (a float tail).
    """

    layers: tuple[Layer, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    pre: tuple[HostOp, ...] = ()
    post: tuple[HostOp, ...] = ()

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        for stage in ("pre", "post"):
            ops = tuple(getattr(self, stage))
            if not all(isinstance(op, HostOp) for op in ops):
                raise FormatError(f"HwGraph.{stage} must hold HostOp objects")
            object.__setattr__(self, stage, ops)
        if not layers or not isinstance(layers[0], Input):
            raise FormatError("an HwGraph starts with exactly one Input layer")
        seen: set[str] = set()
        for layer in layers:
            if not isinstance(layer, Layer):
                raise FormatError(f"not a layer: {layer!r}")
            if layer.name in seen:
                raise FormatError(f"duplicate layer name {layer.name!r}")
            if isinstance(layer, Input) and layer is not layers[0]:
                raise FormatError(f"layer {layer.name!r}: only one Input layer is supported")
            for src in layer.inputs:
                if src not in seen:
                    raise FormatError(
                        f"layer {layer.name!r} reads {src!r}, which is not an earlier layer"
                    )
            seen.add(layer.name)

    # -- access ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def input(self) -> Input:
        first = self.layers[0]
        assert isinstance(first, Input)
        return first

    @property
    def output(self) -> Layer:
        return self.layers[-1]

    @property
    def input_type(self) -> FixedType:
        return self.input.out_type

    @property
    def output_type(self) -> FixedType:
        return self.output.out_type

    def producers(self, layer: Layer) -> list[Layer]:
        """The layers feeding ``layer``, in order."""
        return [self[name] for name in layer.inputs]

    def in_type(self, layer: Layer, index: int = 0) -> FixedType:
        """The FixedType of ``layer``'s ``index``-th input."""
        return self[layer.inputs[index]].out_type

    def in_shape(self, layer: Layer, index: int = 0) -> tuple[int, ...]:
        """The per-sample shape of ``layer``'s ``index``-th input."""
        return self[layer.inputs[index]].out_shape

    def replace(self, name: str, **changes: Any) -> HwGraph:
        """A copy with one layer's fields changed (e.g. a narrower ``acc_type`` for tests)."""
        new = [
            dataclasses.replace(layer, **changes) if layer.name == name else layer
            for layer in self.layers
        ]
        if all(a is b for a, b in zip(new, self.layers, strict=True)):
            raise KeyError(name)
        return HwGraph(tuple(new), dict(self.meta), self.pre, self.post)

    def hardware(self) -> HwGraph:
        """The same graph without its host stages (what the hardware computes)."""
        return HwGraph(self.layers, dict(self.meta)) if self.pre or self.post else self

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        """The hardware input for model input ``x``: ``pre`` applied in float32 (or ``x``)."""
        return run_host(self.pre, x) if self.pre else x

    def postprocess(self, y: np.ndarray) -> np.ndarray:
        """The model output for hardware output values ``y``: ``post`` in float32 (or ``y``).

        Returns float64 (exactly the float32 results).
        """
        if not self.post:
            return y
        if self.post[0].op in WIDE_OPS:  # reads the integer accumulator in float64
            return run_host(self.post, np.asarray(y, dtype=np.float64)).astype(np.float64)
        y32 = np.asarray(y, dtype=np.float32)
        if not np.array_equal(y32, y):
            raise FormatError(
                "the hardware output does not fit float32 exactly; the float tail would round it"
            )
        return run_host(self.post, y32).astype(np.float64)

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the graph to one ``.npz`` file, atomically (temp file + rename)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        header_layers = []
        for i, layer in enumerate(self.layers):
            entry: dict[str, Any] = {"kind": layer.kind}
            for f in dataclasses.fields(layer):
                entry[f.name] = _encode(getattr(layer, f.name), f"l{i}.{f.name}", arrays)
            header_layers.append(entry)
        header = {
            "format": "qnet.HwGraph",
            "version": GRAPH_FORMAT_VERSION,
            "meta": self.meta,
            "layers": header_layers,
        }
        if self.pre:
            header["pre"] = host_ops_to_json(self.pre)
        if self.post:
            header["post"] = host_ops_to_json(self.post)
        arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with atomic_file(path) as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HwGraph:
        """Read a graph written by :meth:`save`. Malformed files raise :class:`FormatError`."""
        path = Path(path)
        if not path.is_file():
            raise FormatError(f"{path}: no such HwGraph file")
        try:
            with np.load(path, allow_pickle=False) as data:
                if "__header__" not in data.files:
                    raise FormatError(f"{path}: not an HwGraph file (no header)")
                header = json.loads(bytes(data["__header__"]).decode())
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as exc:
            raise FormatError(f"{path}: not a readable HwGraph file ({exc})") from None
        if header.get("format") != "qnet.HwGraph":
            raise FormatError(f"{path}: not an HwGraph file")
        if header.get("version") != GRAPH_FORMAT_VERSION:
            raise FormatError(
                f"{path}: HwGraph format version {header.get('version')} (this qnet reads {GRAPH_FORMAT_VERSION})"
            )
        layers = []
        for entry in header["layers"]:
            entry = dict(entry)
            kind = entry.pop("kind")
            if kind not in LAYER_KINDS:
                raise FormatError(f"{path}: unknown layer kind {kind!r}")
            kwargs = {
                k: _decode(v, arrays, f"{path}:{entry.get('name')}.{k}") for k, v in entry.items()
            }
            layers.append(LAYER_KINDS[kind](**kwargs))
        pre = host_ops_from_json(header.get("pre", []), f"{path}: pre")
        post = host_ops_from_json(header.get("post", []), f"{path}: post")
        return cls(tuple(layers), header.get("meta", {}), pre, post)

    # -- display ---------------------------------------------------------------------------
    def summary_rows(self) -> list[dict[str, str]]:
        """Per-layer rows: name, kind, shape, input/weight/bias/acc/out types, parameters."""
        rows = []
        for layer in self.layers:
            weight_type = getattr(layer, "weight_type", None)
            bias_type = getattr(layer, "bias_type", None)
            acc_type = getattr(layer, "acc_type", None)
            rows.append(
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "params": layer.describe(),
                    "in": ", ".join(str(self[i].out_type) for i in layer.inputs),
                    "weight": str(weight_type) if weight_type else "",
                    "bias": str(bias_type) if bias_type else "",
                    "acc": str(acc_type) if acc_type else "",
                    "out": str(layer.out_type),
                    "shape": "x".join(map(str, layer.out_shape)),
                }
            )
        return rows

    def summary(self) -> str:
        """A plain-text per-layer table, with the host stages (if any) before and after it."""
        rows = self.summary_rows()
        cols = list(rows[0].keys())
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
        lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
        lines += ["  ".join(r[c].ljust(widths[c]) for c in cols) for r in rows]
        if not self.pre and not self.post:
            return "\n".join(lines)
        out = ["host preprocessing (float32):"]
        out += [f"  {op.describe()}" for op in self.pre] or ["  (none: the input is quantised)"]
        out += ["hardware:"] + [f"  {line}" for line in lines]
        out += ["host postprocessing (float32):"]
        out += [f"  {op.describe()}" for op in self.post] or ["  (none)"]
        return "\n".join(out)


def layers_of(graph: HwGraph, kind: type[Layer]) -> Sequence[Layer]:
    """All layers of one class, in order."""
    return [layer for layer in graph.layers if isinstance(layer, kind)]
