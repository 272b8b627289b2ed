"""HwGraph -> hls4ml ``ModelGraph`` with every precision taken from the graph.

:func:`to_hls4ml` builds hls4ml's layer list and configuration directly from an
:class:`~qnet.hw.graph.HwGraph` (no QONNX detour): each hardware layer becomes one or more
hls4ml layers whose weight, bias, accumulator and result precisions are printed from the
graph's :class:`~qnet.hw.fixed.FixedType` objects, so hls4ml's own type inference never picks
a width. The input port takes the graph's input type: feed ``predict`` with values already
quantised by it (see :func:`quantize_input`), never raw floats (double rounding).

Layout. The HwGraph is channels-first, (C, *spatial); hls4ml works channels-last,
(*spatial, C). Convolution weights are transposed, and a ``Flatten`` is free: the next
``Dense`` gets its input columns permuted so that it reads the channels-last memory order.
Every hls4ml tensor is therefore "the channels-first logical shape ``cf_shape`` laid out
channels-last"; :meth:`HlsExport.to_graph_layout` turns a (trace) output back into the
HwGraph's layout for comparison with the simulator.

Handler registry
----------------
One handler per HwGraph layer kind, registered with :func:`register_hls_handler`
(duplicates are refused)::

    @register_hls_handler("lstm")
    def _lstm(layer: Layer, graph: HwGraph, ctx: HlsContext) -> None:
        ctx.add(
            {"class_name": "MyLayer", "n_in": ..., "weight_data": ...},   # hls4ml layer dict
            hw_name=layer.name,                     # the HwGraph layer this output represents
            inputs=[ctx.input_of(layer)],           # hls4ml names of the producers
            precision={"result": layer.out_type, "weight": ..., "accum": ...},  # FixedTypes
            cf_shape=layer.out_shape,               # channels-first logical output shape
        )

A handler appends hls4ml layer dicts through :meth:`HlsContext.add` (which names the layer,
records its precisions under ``HLSConfig.LayerName`` and applies ``precision_overrides``).
Extension layers (custom hls4ml layer classes + templates) register themselves with hls4ml
on import; ``export/hls_lstm.py`` is imported here if it exists, as are the kinds registered
below (input, quant, relu, dense, conv, maxpool, avgpool, flatten, add, multithreshold).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qnet.errors import BoardError, ConfigError, UnsupportedLayerError
from qnet.hw.fixed import FixedType
from qnet.hw.graph import (
    Add,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    HwGraph,
    Input,
    Layer,
    MaxPool,
    MultiThreshold,
    Quant,
    ReLU,
)
from qnet.hw.options import IO_TYPES, STRATEGIES, valid_reuse_factors

__all__ = [
    "to_hls4ml",
    "HlsExport",
    "HlsContext",
    "HLS_HANDLERS",
    "register_hls_handler",
    "quantize_input",
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
            return int(self.reuse_factor.get(layer.name, 1))
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
                raise ValueError("cf_shape is required for a layer representing a HwGraph output")
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


# ---------------------------------------------------------------------------- handlers
@register_hls_handler("input")
def _input(layer: Input, graph: HwGraph, ctx: HlsContext) -> None:
    ctx.add(
        {"class_name": "InputLayer", "input_shape": _cl_shape(layer.out_shape)},
        hw_name=layer.name,
        inputs=None,
        precision={"result": layer.out_type},
        cf_shape=layer.out_shape,
    )


def _cast_layer(layer: Layer, ctx: HlsContext, activation: str) -> None:
    ctx.add(
        {"class_name": "Activation", "activation": activation},
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision={"result": layer.out_type},
        cf_shape=ctx.in_cf_shape(layer),
    )


@register_hls_handler("quant")
def _quant(layer: Quant, graph: HwGraph, ctx: HlsContext) -> None:
    # A linear activation is ``res = data`` with res_T = out_type: the ap_fixed cast.
    _cast_layer(layer, ctx, "linear")


@register_hls_handler("relu")
def _relu(layer: ReLU, graph: HwGraph, ctx: HlsContext) -> None:
    _cast_layer(layer, ctx, "relu")


@register_hls_handler("flatten")
def _flatten(layer: Flatten, graph: HwGraph, ctx: HlsContext) -> None:
    in_type = graph.in_type(layer)
    if layer.out_type != in_type:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} ({layer.source or 'flatten'}): a flatten that changes the type "
            f"({in_type} -> {layer.out_type}) is not supported by the hls4ml export"
        )
    in_cf = ctx.in_cf_shape(layer)
    if len(in_cf) <= 1:
        ctx.alias(layer.name, layer.inputs[0], in_cf)
        return
    # A reshape in hls4ml (free in hardware): the data stays in channels-last order, so the
    # tensor keeps the channels-first logical shape of its input; the next Dense permutes
    # its columns to read it.
    ctx.add(
        {"class_name": "Reshape", "target_shape": [int(np.prod(in_cf))]},
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision={"result": layer.out_type},
        cf_shape=in_cf,
    )


def _weighted_precision(layer: Dense | Conv) -> dict[str, FixedType]:
    prec: dict[str, FixedType] = {
        "weight": layer.weight_type,
        "accum": layer.acc_type,
        "result": layer.out_type,
    }
    prec["bias"] = layer.bias_type if layer.bias_type is not None else FixedType(1, 1, signed=False)
    return prec


def _bias_values(layer: Dense | Conv) -> np.ndarray:
    if layer.bias is None:
        return np.zeros(layer.out_features)
    assert layer.bias_type is not None
    return layer.bias_type.from_int(layer.bias)


@register_hls_handler("dense")
def _dense(layer: Dense, graph: HwGraph, ctx: HlsContext) -> None:
    in_cf = ctx.in_cf_shape(layer)
    weight = layer.weight  # (out, in) in the HwGraph's channels-first flatten order
    if len(in_cf) > 1:
        if int(np.prod(in_cf)) != layer.in_features:
            raise UnsupportedLayerError(
                f"layer {layer.name!r}: reads a {in_cf} tensor but has {layer.in_features} inputs"
            )
        # hls4ml's tensor is (*spatial, C) in memory: permute the columns to that order.
        weight = np.moveaxis(weight.reshape(layer.out_features, *in_cf), 1, -1).reshape(
            layer.out_features, -1
        )
    ctx.add(
        {
            "class_name": "Dense",
            "n_in": layer.in_features,
            "n_out": layer.out_features,
            "weight_data": layer.weight_type.from_int(weight.T.copy()),
            "bias_data": _bias_values(layer),
            "use_bias": layer.bias is not None,
        },
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision=_weighted_precision(layer),
        cf_shape=layer.out_shape,
        config={"ReuseFactor": ctx.reuse_for(layer)},
    )


@register_hls_handler("conv")
def _conv(layer: Conv, graph: HwGraph, ctx: HlsContext) -> None:
    in_shape = graph.in_shape(layer)
    if ctx.in_cf_shape(layer) != in_shape:
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: convolution after a flatten is not supported"
        )
    attrs: dict[str, Any] = {
        "data_format": "channels_last",
        "n_chan": layer.in_channels,
        "n_filt": layer.out_features,
        "bias_data": _bias_values(layer),
        "dilation": 1,
    }
    if layer.dims == 1:
        # keras layout (k, in, out) from (out, in, k)
        attrs.update(
            class_name="Conv1D",
            weight_data=layer.weight_type.from_int(layer.weight.transpose(2, 1, 0).copy()),
            in_width=in_shape[1],
            out_width=layer.out_shape[1],
            filt_width=layer.kernel[0],
            stride_width=layer.stride[0],
            pad_left=layer.padding[0],
            pad_right=layer.padding[0],
        )
    else:
        attrs.update(
            class_name="Conv2D",
            weight_data=layer.weight_type.from_int(layer.weight.transpose(2, 3, 1, 0).copy()),
            in_height=in_shape[1],
            in_width=in_shape[2],
            out_height=layer.out_shape[1],
            out_width=layer.out_shape[2],
            filt_height=layer.kernel[0],
            filt_width=layer.kernel[1],
            stride_height=layer.stride[0],
            stride_width=layer.stride[1],
            pad_top=layer.padding[0],
            pad_bottom=layer.padding[0],
            pad_left=layer.padding[1],
            pad_right=layer.padding[1],
        )
    ctx.add(
        attrs,
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision=_weighted_precision(layer),
        cf_shape=layer.out_shape,
        config={"ReuseFactor": ctx.reuse_for(layer)},
    )


def _pool(
    layer: MaxPool | AvgPool, graph: HwGraph, ctx: HlsContext, op: str, accum: FixedType
) -> None:
    in_shape = graph.in_shape(layer)
    dims = len(layer.kernel)
    attrs: dict[str, Any] = {
        "data_format": "channels_last",
        "n_filt": in_shape[0],
        "count_pad": False,
    }
    if dims == 1:
        attrs.update(
            class_name=f"{op}Pooling1D",
            n_in=in_shape[1],
            n_out=layer.out_shape[1],
            pool_width=layer.kernel[0],
            stride_width=layer.stride[0],
            pad_left=0,
            pad_right=0,
        )
    elif dims == 2:
        attrs.update(
            class_name=f"{op}Pooling2D",
            in_height=in_shape[1],
            in_width=in_shape[2],
            out_height=layer.out_shape[1],
            out_width=layer.out_shape[2],
            pool_height=layer.kernel[0],
            pool_width=layer.kernel[1],
            stride_height=layer.stride[0],
            stride_width=layer.stride[1],
            pad_top=0,
            pad_bottom=0,
            pad_left=0,
            pad_right=0,
        )
    else:
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: {dims}-D pooling is not supported (1-D, 2-D)"
        )
    ctx.add(
        attrs,
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision={"result": layer.out_type, "accum": accum},
        cf_shape=layer.out_shape,
    )


@register_hls_handler("maxpool")
def _maxpool(layer: MaxPool, graph: HwGraph, ctx: HlsContext) -> None:
    _pool(layer, graph, ctx, "Max", graph.in_type(layer))


@register_hls_handler("avgpool")
def _avgpool(layer: AvgPool, graph: HwGraph, ctx: HlsContext) -> None:
    # hls4ml: acc = sum (in accum_t); acc /= n; res = acc. With accum_t holding the sum exactly
    # and log2(n) more fractional bits, the division by the power of two n is exact, and the
    # only rounding is the final cast to out_type, as in the simulator.
    in_type = graph.in_type(layer)
    n = int(np.prod(layer.kernel))
    log2n = n.bit_length() - 1
    accum = FixedType(in_type.width + 2 * log2n + 1, in_type.integer + log2n + 1, signed=True)
    _pool(layer, graph, ctx, "Average", accum)


@register_hls_handler("add")
def _add(layer: Add, graph: HwGraph, ctx: HlsContext) -> None:
    if ctx.in_cf_shape(layer, 0) != ctx.in_cf_shape(layer, 1):
        raise UnsupportedLayerError(f"layer {layer.name!r}: adds tensors of different layouts")
    ctx.add(
        {"class_name": "Add", "op": "add"},
        hw_name=layer.name,
        inputs=[ctx.input_of(layer, 0), ctx.input_of(layer, 1)],
        precision={"result": layer.out_type},
        cf_shape=ctx.in_cf_shape(layer),
    )


@register_hls_handler("multithreshold")
def _multithreshold(layer: MultiThreshold, graph: HwGraph, ctx: HlsContext) -> None:
    # The extension layer (QnetThreshold) registers itself with hls4ml on import.
    from qnet.export.hls_threshold import threshold_hls_layer

    in_cf = ctx.in_cf_shape(layer)
    attrs, precision = threshold_hls_layer(layer, graph.in_type(layer), in_cf)
    ctx.add(
        attrs,
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision=precision,
        cf_shape=in_cf,
    )


# ---------------------------------------------------------------------------- driver
def _load_extension_handlers() -> None:
    for module in ("qnet.export.hls_lstm",):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def _board(board: Any) -> Any:
    from qnet.hw.boards import load_board

    return load_board(board)


def _backend_for(board: Any) -> tuple[str, str | None]:
    """hls4ml backend name and (VivadoAccelerator) board name for a Board."""
    backend = board.hls4ml_backend
    if backend in ("none", "", None):
        raise BoardError(
            f"board {board.name!r} has no hls4ml backend (hls4ml_backend = {backend!r})"
        )
    if backend == "VivadoAccelerator":
        import json

        import hls4ml

        boards_json = (
            Path(hls4ml.__file__).parent
            / "backends"
            / "vivado_accelerator"
            / "supported_boards.json"
        )
        supported = json.loads(boards_json.read_text())
        name = board.hls4ml_board or board.name
        if name not in supported:
            raise BoardError(
                f"board {board.name!r}: hls4ml's VivadoAccelerator backend does not support board "
                f"{name!r}; supported: {', '.join(sorted(supported))}"
            )
        return backend, name
    return backend, None


def _check_reuse_factors(ctx: HlsContext) -> None:
    for entry in ctx.layers:
        cls = entry["class_name"]
        if cls not in ("Dense", "Conv1D", "Conv2D"):
            continue
        rf = ctx.layer_config[entry["name"]].get("ReuseFactor", 1)
        if cls == "Dense":
            n_in, n_out = entry["n_in"], entry["n_out"]
        else:
            n_in = entry["n_chan"] * entry["filt_width"] * entry.get("filt_height", 1)
            n_out = entry["n_filt"]
        if not isinstance(rf, int) or rf < 1:
            raise ConfigError(f"reuse factor must be a positive integer, got {rf!r}")
        valid = valid_reuse_factors(n_in, n_out)
        if rf not in valid:
            hw = ctx.hw_of_hls.get(entry["name"], entry["name"])
            raise ConfigError(
                f"reuse factor {rf} is not valid for layer {hw!r} ({n_in} inputs x {n_out} outputs); "
                f"valid reuse factors: {', '.join(map(str, valid))}"
            )


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
        from qnet.errors import DataError

        raise DataError(
            f"input has shape {arr.shape}; the graph expects (N, {graph.input.out_shape})"
        )
    return graph.input_type.quantize(arr)


#: Key of the hls4ml configuration holding the AXI wrapper's port types (ap_ spelling).
_AXI_TYPES_KEY = "QnetAxiTypes"
_AXI_TYPEDEF_RE = re.compile(r"^(\s*typedef\s+)[^;]+?(\s+(T_in|T_out)\s*;)", re.M)


def _install_axi_writer(backend: Any) -> None:
    """Give hls4ml's VivadoAccelerator backend a writer whose AXI types come from the graph.

    hls4ml 1.3 writes the wrapper's ``T_in``/``T_out`` in its own spelling
    (``ufixed<8,0,RND_CONV,SAT,0>``, not C++) and widened to a multiple of 8 bits. The
    subclass rewrites both typedefs to the exact ``ap_`` types stored under
    ``config["QnetAxiTypes"]`` (the graph's input and output :class:`FixedType`), inside
    hls4ml's own write step, so every ``write()``/``compile()``/``build()`` of the model, and
    the project tarball, carry them. Models without that key are written unchanged.
    """
    from hls4ml.writer.vivado_accelerator_writer import VivadoAcceleratorWriter

    if getattr(backend.writer, "_qnet_axi_types", False):
        return

    class QnetAcceleratorWriter(type(backend.writer)):  # type: ignore[misc]
        _qnet_axi_types = True

        def write_axi_wrapper(self, model: Any) -> None:
            super().write_axi_wrapper(model)
            types = model.config.config.get(_AXI_TYPES_KEY)
            if not types:
                return
            header = (
                Path(model.config.get_output_dir())
                / "firmware"
                / f"{model.config.get_project_name()}_axi.h"
            )
            text = header.read_text()
            fixed, count = _AXI_TYPEDEF_RE.subn(
                lambda m: m.group(1) + types[m.group(3)] + m.group(2), text
            )
            if count != 2:
                raise RuntimeError(
                    f"internal: expected the T_in and T_out typedefs in {header}, found {count}"
                )
            header.write_text(fixed)

    if not isinstance(backend.writer, VivadoAcceleratorWriter):
        raise RuntimeError(f"internal: unexpected VivadoAccelerator writer {backend.writer!r}")
    backend.writer = QnetAcceleratorWriter()


def _write(hls_model: Any) -> None:
    """``hls_model.write()`` with hls4ml's messages silenced."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        hls_model.write()


def _compile(hls_model: Any) -> None:
    """Write the project and build the C simulation library with g++."""
    import contextlib
    import io
    import shutil

    from qnet.errors import ToolNotFoundError

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
        raise RuntimeError(
            f"hls4ml C simulation failed to build in {hls_model.config.get_output_dir()}: {exc}; "
            "run build_lib.sh there to see the compiler errors"
        ) from exc


def to_hls4ml(
    graph: HwGraph,
    board: Any = "pynq-z2",
    output_dir: str | Path = "hls4ml_prj",
    io_type: str = "io_parallel",
    reuse_factor: int | Mapping[str, int] = 1,
    strategy: str = "Latency",
    clock_period_ns: float | None = None,
    precision_overrides: Mapping[str, Mapping[str, FixedType | str]] | None = None,
    project_name: str = "qnet",
    write: bool = True,
    tb_input: np.ndarray | None = None,
) -> HlsExport:
    """Translate ``graph`` into an hls4ml model for ``board`` and write the project.

    Parameters
    ----------
    graph : HwGraph
        The hardware graph (every precision is taken from it).
    board : str, Path or Board
        Board name or board file; gives the part, clock and hls4ml backend.
    output_dir : str or Path
        Where hls4ml writes the project.
    io_type : {"io_parallel", "io_stream"}
    reuse_factor : int or mapping of HwGraph layer name -> int
        Must be valid for every weighted layer (else :class:`ConfigError` lists valid values).
    strategy : {"Latency", "Resource"}
    clock_period_ns : float, optional
        Defaults to the board's default clock.
    precision_overrides : mapping, optional
        ``{hw_layer_name: {"accum" | "result" | "weight" | "bias": FixedType or str}}``:
        replaces precisions in the export only (the HwGraph is unchanged). For experiments
        and tests; an override can make the export differ from the simulator.
    project_name : str
    write : bool
        Write the project files (``hls_model.write()``); ``compile()`` writes them anyway.
    tb_input : numpy.ndarray, optional
        Float inputs (N, *input shape) for ``tb_data/``: written quantised, with the
        simulator's outputs as the expected predictions.

    Returns
    -------
    HlsExport
        ``.hls_model`` is the hls4ml ``ModelGraph``; ``.predict``/``.trace`` take float
        input in the graph's layout and quantise it once by the input type.
    """
    import contextlib
    import io
    import warnings

    if io_type not in IO_TYPES:
        raise ConfigError(f"io_type must be one of {', '.join(IO_TYPES)}, got {io_type!r}")
    strategy_map = {s.lower(): s for s in STRATEGIES}
    if not isinstance(strategy, str) or strategy.lower() not in strategy_map:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    strategy = strategy_map[strategy.lower()]
    if isinstance(reuse_factor, bool) or not isinstance(reuse_factor, int | Mapping):
        raise ConfigError(f"reuse_factor must be a positive integer, got {reuse_factor!r}")
    if isinstance(reuse_factor, int) and reuse_factor < 1:
        raise ConfigError(f"reuse_factor must be a positive integer, got {reuse_factor}")
    overrides = dict(precision_overrides or {})
    for name in overrides:
        try:
            graph[name]
        except KeyError:
            raise ConfigError(
                f"precision_overrides names layer {name!r}, which is not in the graph"
            ) from None

    board_obj = _board(board)
    backend_name, accel_board = _backend_for(board_obj)
    if clock_period_ns is None:
        clock_period_ns = 1000.0 / float(board_obj.default_clock_mhz)
    if clock_period_ns <= 0:
        raise ConfigError(f"clock_period_ns must be positive, got {clock_period_ns}")

    _load_extension_handlers()
    ctx = HlsContext(graph, io_type, strategy, reuse_factor, overrides)
    for layer in graph.layers:
        handler = HLS_HANDLERS.get(layer.kind)
        if handler is None:
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({layer.source or layer.kind}): no hls4ml export for layer kind "
                f"{layer.kind!r}; supported: {', '.join(sorted(HLS_HANDLERS))}"
            )
        handler(layer, graph, ctx)
    unused = set(overrides) - ctx.used_overrides
    if unused:
        raise ConfigError(
            f"precision_overrides for {sorted(unused)}: these layers have no hls4ml precisions"
        )

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        import hls4ml
        from hls4ml.model.graph import ModelGraph

    backend = hls4ml.backends.get_backend(backend_name)
    _check_reuse_factors(ctx)

    out_layer = ctx.hls_name[graph.output.name]
    if graph.output.kind == "flatten" and len(ctx.cf_shape[graph.output.name]) > 1:
        raise UnsupportedLayerError(
            f"layer {graph.output.name!r}: a graph ending in a flatten is not supported"
        )
    if backend_name == "VivadoAccelerator":
        config = backend.create_initial_config(
            board=accel_board,
            part=board_obj.part,
            clock_period=clock_period_ns,
            io_type=io_type,
            input_type=graph.input_type.hls4ml_str(),
            output_type=graph.output_type.hls4ml_str(),
        )
    else:
        config = backend.create_initial_config(
            part=board_obj.part, clock_period=clock_period_ns, io_type=io_type
        )
    config["Backend"] = backend_name
    if backend_name == "VivadoAccelerator":
        _install_axi_writer(backend)
        config[_AXI_TYPES_KEY] = {
            "T_in": graph.input_type.ap_str(),
            "T_out": graph.output_type.ap_str(),
        }
    config["OutputDir"] = str(output_dir)
    config["ProjectName"] = project_name
    # The model-level default is only a fallback for layers hls4ml inserts by itself
    # (zero padding, reshape); _check_precisions below refuses any use that matters.
    config["HLSConfig"] = {
        "Model": {"Precision": {"default": "fixed<16,6>"}, "ReuseFactor": 1, "Strategy": strategy},
        "LayerName": ctx.layer_config,
    }
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        hls_model = ModelGraph.from_layer_list(config, ctx.layers, outputs=[out_layer])
    _check_precisions(hls_model, ctx)
    export = HlsExport(
        hls_model=hls_model,
        graph=graph,
        output_dir=Path(output_dir),
        hls_name=dict(ctx.hls_name),
        cf_shape=dict(ctx.cf_shape),
        backend=backend_name,
        part=board_obj.part,
        clock_period_ns=float(clock_period_ns),
        io_type=io_type,
        strategy=strategy,
        reuse_factor=reuse_factor,
    )
    if write:
        _write(hls_model)
        if tb_input is not None:
            from qnet.export.tbdata import write_tb_data

            write_tb_data(export, tb_input)
    return export


def _check_precisions(hls_model: Any, ctx: HlsContext) -> None:
    """Every hls4ml layer we did not create must pass its input type through unchanged."""
    ours = {entry["name"] for entry in ctx.layers}
    for layer in hls_model.get_layers():
        if layer.name in ours:
            for var, expected in ctx.layer_config[layer.name]["Precision"].items():
                got = _type_of(layer, var)
                if got is not None and FixedType.parse(got) != FixedType.parse(expected):
                    raise RuntimeError(
                        f"internal: hls4ml changed {layer.name}.{var} from {expected} to {got}"
                    )
            continue
        # An inserted helper layer (zero padding, reshape, transpose): result = input type.
        inp = layer.get_input_variable()
        out = layer.get_output_variable()
        if (
            inp is not None
            and out is not None
            and str(inp.type.precision) != str(out.type.precision)
        ):
            out.type.precision = inp.type.precision


def _type_of(layer: Any, var: str) -> str | None:
    if var == "result":
        t = layer.get_output_variable().type.precision
    elif var in ("weight", "bias"):
        w = layer.weights.get(var) if hasattr(layer.weights, "get") else None
        if w is None:
            return None
        t = w.type.precision
    else:
        attr = layer.get_attr(f"{var}_t")
        if attr is None:
            return None
        t = attr.precision
    text = str(t)
    if not (text.startswith("ap_") or text.startswith("fixed") or text.startswith("ufixed")):
        return None
    return text
