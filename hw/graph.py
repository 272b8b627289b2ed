"""``HwGraph``: the hardware graph, one exact description of what the hardware computes.

An :class:`HwGraph` is an ordered list of small frozen layer objects (topological order).
Every layer names its producers (``inputs``), has a per-sample output shape (channels-first,
no batch axis) and an output :class:`~qnet.hw.fixed.FixedType`; layers with weights hold
int64 mantissa arrays plus the ``FixedType`` they are mantissas of, and an accumulator type
sized so the accumulation cannot overflow.

Tensors flow between layers as int64 mantissas of the producer's ``out_type``.

The layer kinds and their registry :data:`LAYER_KINDS` live in :mod:`qnet.hw.layers` (core
kinds) and their own modules (the LSTM in :mod:`qnet.hw.lstm`), which the package ``qnet.hw``
imports explicitly, so the registry is complete whenever any ``qnet.hw`` module can be used
(importing ``qnet.hw.graph`` runs ``qnet/hw/__init__.py`` first); the core kinds are
re-exported here, where they have always been imported from. The graph saves to one ``.npz``
file (arrays + a JSON header) and loads without torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qnet.errors import FormatError
from qnet.hw.atomic import atomic_file
from qnet.hw.fixed import FixedType
from qnet.hw.host import WIDE_OPS, HostOp, host_ops_from_json, host_ops_to_json, run_host
from qnet.hw.layers import (
    LAYER_KINDS,
    Add,
    AvgPool,
    Concat,
    Conv,
    Dense,
    Flatten,
    Input,
    Layer,
    MaxPool,
    MultiThreshold,
    Quant,
    ReLU,
    register_layer,
)

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
