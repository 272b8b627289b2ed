"""The hls4ml side of the export: handler registry, translation context, layouts, HlsExport.

:func:`qnet.export.hls.to_hls4ml` walks the HwGraph and calls one handler per layer kind
(registered with :func:`register_hls_handler`, duplicates refused; the handlers live in
:mod:`qnet.export.hls_layers`). A handler appends hls4ml layer dicts through
:meth:`HlsContext.add`, which names the layer, records its precisions under
``HLSConfig.LayerName`` and applies ``precision_overrides``::

    @register_hls_handler("lstm")
    def _lstm(layer: Layer, graph: HwGraph, ctx: HlsContext) -> None:
        ctx.add(
            {"class_name": "MyLayer", "n_in": ..., "weight_data": ...},   # hls4ml layer dict
            hw_name=layer.name,                     # the HwGraph layer this output represents
            inputs=[ctx.input_of(layer)],           # hls4ml names of the producers
            precision={"result": layer.out_type, "weight": ..., "accum": ...},  # FixedTypes
            cf_shape=layer.out_shape,               # channels-first logical output shape
        )

Layout. The HwGraph is channels-first, (C, *spatial); hls4ml works channels-last,
(*spatial, C). Every hls4ml tensor is "the channels-first logical shape ``cf_shape`` laid out
channels-last"; :meth:`HlsExport.to_graph_layout` turns a (trace) output back into the
HwGraph's layout for comparison with the simulator.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qnet.errors import BuildError, ConfigError, DataError, InternalError, ToolNotFoundError
from qnet.hw.fixed import FixedType
from qnet.hw.graph import HwGraph, Layer

__all__ = [
    "HLS_HANDLERS",
    "HlsContext",
    "HlsExport",
    "HlsHandler",
    "register_hls_handler",
    "quantize_input",
    "to_channels_last",
]

#: Signature of an export handler: (layer, graph, ctx) -> None (appends via ctx.add).
HlsHandler = Callable[[Any, HwGraph, "HlsContext"], None]
HLS_HANDLERS: dict[str, HlsHandler] = {}


def register_hls_handler(kind: str) -> Callable[[HlsHandler], HlsHandler]:
    """Decorator: register the hls4ml export handler of a HwGraph layer kind (duplicates refused)."""

    def deco(fn: HlsHandler) -> HlsHandler:
        if kind in HLS_HANDLERS:
            raise ValueError(
                f"an hls4ml export handler for layer kind {kind!r} is already registered"
            )
        HLS_HANDLERS[kind] = fn
        return fn

    return deco


def _precision_str(t: FixedType | str) -> str:
    if isinstance(t, FixedType):
        return t.hls4ml_str()
    return FixedType.parse(t).hls4ml_str()


def _c_name(name: str) -> str:
    out = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not out or out[0].isdigit():
        out = "l_" + out
    if out.lower() in ("input", "output"):
        out = out + "_0"
    return out


# ---------------------------------------------------------------------------- context
@dataclass
class HlsContext:
    """Mutable state while translating one graph (used by the handlers).

    Attributes
    ----------
    graph : HwGraph
    io_type, strategy : str
    layers : list of dict
        The hls4ml layer list being built.
    layer_config : dict
        ``HLSConfig['LayerName']`` entries (precisions, reuse factor, trace).
    hls_name : dict
        HwGraph layer name -> name of the hls4ml layer holding its output.
    cf_shape : dict
        HwGraph layer name -> channels-first logical shape of the hls4ml tensor.
    """

    graph: HwGraph
    io_type: str
    strategy: str
    reuse_factor: int | Mapping[str, int]
    overrides: Mapping[str, Mapping[str, FixedType | str]]
    layers: list[dict[str, Any]] = field(default_factory=list)
    layer_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    hls_name: dict[str, str] = field(default_factory=dict)
    hw_of_hls: dict[str, str] = field(default_factory=dict)
    cf_shape: dict[str, tuple[int, ...]] = field(default_factory=dict)
    used_overrides: set[str] = field(default_factory=set)
    _names: set[str] = field(default_factory=set)

    def unique_name(self, base: str) -> str:
        name = _c_name(base)
        candidate, i = name, 1
        while candidate.lower() in self._names:
            candidate = f"{name}_{i}"
            i += 1
        self._names.add(candidate.lower())
        return candidate

    def input_of(self, layer: Layer, index: int = 0) -> str:
        """hls4ml name of the tensor feeding ``layer``'s ``index``-th input."""
        return self.hls_name[layer.inputs[index]]

    def in_cf_shape(self, layer: Layer, index: int = 0) -> tuple[int, ...]:
        return self.cf_shape[layer.inputs[index]]

    def reuse_for(self, layer: Layer) -> int:
        if isinstance(self.reuse_factor, Mapping):
            default = self.reuse_factor.get("default", 1)
            return int(self.reuse_factor.get(layer.name, default))
        return int(self.reuse_factor)

    def add(
        self,
        hls_layer: dict[str, Any],
        *,
        hw_name: str | None,
        inputs: list[str] | None,
        precision: Mapping[str, FixedType],
        cf_shape: tuple[int, ...] | None,
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> str:
        """Append one hls4ml layer; returns its hls4ml name.

        ``hw_name`` names the HwGraph layer whose output this is (or ``None`` for an internal
        helper layer); the precisions of ``precision_overrides[hw_name]`` replace the given
        ones (that is how a deliberately wrong export is made for tests).
        """
        hname = self.unique_name(name or hw_name or hls_layer["class_name"])
        entry = dict(hls_layer)
        entry["name"] = hname
        if inputs is not None:
            entry["inputs"] = list(inputs)
        prec = {k: _precision_str(v) for k, v in precision.items()}
        if hw_name is not None and hw_name in self.overrides:
            for var, t in self.overrides[hw_name].items():
                if var not in prec:
                    raise ConfigError(
                        f"precision_overrides[{hw_name!r}]: layer has no {var!r} precision; "
                        f"it has {sorted(prec)}"
                    )
                prec[var] = _precision_str(t)
            self.used_overrides.add(hw_name)
        cfg: dict[str, Any] = {"Precision": prec, "Trace": True}
        if config:
            cfg.update(config)
        self.layer_config[hname] = cfg
        self.layers.append(entry)
        if hw_name is not None:
            self.hls_name[hw_name] = hname
            self.hw_of_hls[hname] = hw_name
            if cf_shape is None:
                raise InternalError(
                    f"hls handler for {hw_name!r} gave no cf_shape for a HwGraph layer's output"
                )
            self.cf_shape[hw_name] = tuple(int(s) for s in cf_shape)
        return hname

    def alias(self, hw_name: str, source_hw_name: str, cf_shape: tuple[int, ...]) -> None:
        """Let ``hw_name`` read the hls4ml tensor of ``source_hw_name`` (a free layout change)."""
        self.hls_name[hw_name] = self.hls_name[source_hw_name]
        self.cf_shape[hw_name] = tuple(cf_shape)


def _cl_shape(cf_shape: tuple[int, ...]) -> list[int]:
    """Channels-last shape of a channels-first logical shape."""
    if len(cf_shape) <= 1:
        return list(cf_shape)
    return [*cf_shape[1:], cf_shape[0]]


def to_channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) -> (N, *spatial, C); (N, F) unchanged."""
    return np.moveaxis(x, 1, -1) if x.ndim > 2 else x


def _from_cl(flat: np.ndarray, cf_shape: tuple[int, ...], hw_shape: tuple[int, ...]) -> np.ndarray:
    n = flat.shape[0]
    arr = flat.reshape(n, *_cl_shape(cf_shape))
    if len(cf_shape) > 1:
        arr = np.moveaxis(arr, -1, 1)
    return arr.reshape(n, *hw_shape)


@dataclass(frozen=True, eq=False)
class HlsExport:
    """What :func:`to_hls4ml` built: the hls4ml model plus the layout bookkeeping.

    Attributes
    ----------
    hls_model : hls4ml.model.graph.ModelGraph
    graph : HwGraph
    output_dir : Path
    hls_name : dict
        HwGraph layer name -> hls4ml layer name holding its output.
    cf_shape : dict
        HwGraph layer name -> channels-first logical shape of that hls4ml tensor.
    backend, part : str
    clock_period_ns : float
    io_type, strategy : str
    """

    hls_model: Any
    graph: HwGraph
    output_dir: Path
    hls_name: dict[str, str]
    cf_shape: dict[str, tuple[int, ...]]
    backend: str
    part: str
    clock_period_ns: float
    io_type: str
    strategy: str
    reuse_factor: int | Mapping[str, int]

    def hls_input(self, x: np.ndarray) -> np.ndarray:
        """Quantise float input (N, *input shape) by the input type and lay it out channels-last."""
        q = quantize_input(self.graph, x)
        return np.ascontiguousarray(to_channels_last(q))

    def to_graph_layout(self, hw_name: str, values: np.ndarray) -> np.ndarray:
        """An hls4ml tensor (N, ...) holding HwGraph layer ``hw_name``'s output, in the graph's layout."""
        values = np.asarray(values, dtype=np.float64)
        n = values.shape[0]
        return _from_cl(
            values.reshape(n, -1), self.cf_shape[hw_name], self.graph[hw_name].out_shape
        )

    def compile(self) -> None:
        """Build the C simulation library (g++)."""
        _compile(self.hls_model)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """C simulation on float input ``x`` (quantised here once); output in the graph's layout."""
        arr = self.hls_input(x)
        out = np.asarray(self.hls_model.predict(arr), dtype=np.float64)
        return self.to_graph_layout(self.graph.output.name, out.reshape(arr.shape[0], -1))

    def trace(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every traced HwGraph layer's C-simulation output (graph layout), by HwGraph name."""
        arr = self.hls_input(x)
        _, traces = self.hls_model.trace(arr)
        result: dict[str, np.ndarray] = {}
        for hw_name, hname in self.hls_name.items():
            if hname in traces and self.cf_shape[hw_name] is not None:
                if self.graph[hw_name].kind == "flatten":
                    continue
                values = np.asarray(traces[hname], dtype=np.float64)
                result[hw_name] = self.to_graph_layout(hw_name, values.reshape(arr.shape[0], -1))
        result[self.graph.output.name] = self.predict(x)
        return result


def quantize_input(graph: HwGraph, x: np.ndarray) -> np.ndarray:
    """``x`` quantised once by the graph's input type (float64, exact), shape (N, *input shape)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape == graph.input.out_shape:
        arr = arr[None]
    if arr.shape[1:] != graph.input.out_shape:
        raise DataError(
            f"input has shape {arr.shape}; the graph expects (N, {graph.input.out_shape})"
        )
    return graph.input_type.quantize(arr)


#: Key of the hls4ml configuration holding the AXI wrapper's port types (ap_ spelling).


def _write(hls_model: Any) -> None:
    """``hls_model.write()`` with hls4ml's messages silenced."""
    with contextlib.redirect_stdout(io.StringIO()):
        hls_model.write()


def _compile(hls_model: Any) -> None:
    """Write the project and build the C simulation library with g++."""
    if shutil.which("g++") is None:
        raise ToolNotFoundError(
            "hls4ml C simulation needs g++; install it (e.g. apt-get install g++)"
        )
    _write(hls_model)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            hls_model._compile()
    except OSError as exc:  # the library was not built: g++ failed (its messages went to stderr)
        raise BuildError(
            f"hls4ml C simulation failed to build in {hls_model.config.get_output_dir()}: {exc}; "
            "run build_lib.sh there to see the compiler errors"
        ) from exc
