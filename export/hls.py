"""HwGraph -> hls4ml ``ModelGraph`` with every precision taken from the graph.

:func:`to_hls4ml` builds hls4ml's layer list and configuration directly from an
:class:`~qnet.hw.graph.HwGraph` (no QONNX detour): each hardware layer becomes one or more
hls4ml layers (one handler per layer kind, :mod:`qnet.export.hls_layers`) whose weight, bias,
accumulator and result precisions are printed from the graph's
:class:`~qnet.hw.fixed.FixedType` objects, so hls4ml's own type inference never picks a width.
The input port takes the graph's input type: feed ``predict`` with values already quantised by
it (see :func:`quantize_input`), never raw floats (double rounding).

The registry, translation context and :class:`HlsExport` live in :mod:`qnet.export.hls_base`;
``tb_data/`` is written by :mod:`qnet.export.tbdata`.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import qnet.export.hls_layers  # noqa: F401  (fills HLS_HANDLERS: one handler per layer kind)
from qnet.errors import BoardError, ConfigError, InternalError, UnsupportedLayerError
from qnet.export.hls_base import (
    HLS_HANDLERS,
    HlsContext,
    HlsExport,
    _write,
    quantize_input,
    register_hls_handler,
)
from qnet.export.tbdata import write_tb_data
from qnet.hw.boards import Board
from qnet.hw.fixed import FixedType
from qnet.hw.graph import HwGraph
from qnet.hw.options import (
    DEFAULT_BOARD,
    BuildOptions,
    ReuseFactor,
    valid_reuse_factors,
)

__all__ = [
    "to_hls4ml",
    "as_build_options",
    "HlsExport",
    "HlsContext",
    "HLS_HANDLERS",
    "register_hls_handler",
    "quantize_input",
]


def _backend_for(board: Board) -> tuple[str, str | None]:
    """hls4ml backend name and (VivadoAccelerator) board name for a Board."""
    backend = board.hls4ml_backend
    if backend in ("none", "", None):
        raise BoardError(
            f"board {board.name!r} has no hls4ml backend (hls4ml_backend = {backend!r})"
        )
    if backend == "VivadoAccelerator":
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


def _check_reuse_factors(ctx: HlsContext, backend: Any) -> None:
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
                raise InternalError(
                    f"expected the T_in and T_out typedefs in {header}, found {count}"
                )
            header.write_text(fixed)

    if not isinstance(backend.writer, VivadoAcceleratorWriter):
        raise InternalError(f"unexpected VivadoAccelerator writer {backend.writer!r}")
    backend.writer = QnetAcceleratorWriter()


def as_build_options(
    board: str | Path | Board | BuildOptions,
    *,
    io_type: str | None = None,
    reuse_factor: ReuseFactor | None = None,
    strategy: str | None = None,
    clock_period_ns: float | None = None,
) -> BuildOptions:
    """One :class:`~qnet.hw.options.BuildOptions` from a whole one or from loose options
    (unset ones take the defaults of :mod:`qnet.hw.options`); refuses both at once."""
    loose: dict[str, Any] = {
        "io_type": io_type,
        "reuse_factor": reuse_factor,
        "strategy": strategy,
        "clock_period_ns": clock_period_ns,
    }
    given = {k: v for k, v in loose.items() if v is not None}
    if isinstance(board, BuildOptions):
        if given:
            raise ConfigError(
                f"got BuildOptions and also {', '.join(sorted(given))}; set them in the BuildOptions"
            )
        return board
    return BuildOptions(board=board, **given)


def to_hls4ml(
    graph: HwGraph,
    board: str | Path | Board | BuildOptions = DEFAULT_BOARD,
    output_dir: str | Path = "hls4ml_prj",
    io_type: str | None = None,
    reuse_factor: ReuseFactor | None = None,
    strategy: str | None = None,
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
    board : str, Path, Board or BuildOptions
        Board name or board file (gives the part, clock and hls4ml backend), or the whole
        build's options (then io_type, reuse_factor, strategy, clock_period_ns stay unset).
    output_dir : str or Path
        Where hls4ml writes the project.
    io_type : {"io_parallel", "io_stream"}, optional
        Default ``"io_parallel"`` (:data:`qnet.hw.options.DEFAULT_IO_TYPE`).
    reuse_factor : int or mapping of HwGraph layer name -> int, optional
        Default 1 (a mapping's ``"default"`` key sets unnamed layers). Must be valid for every
        weighted layer (else :class:`ConfigError` lists valid values).
    strategy : {"Latency", "Resource"}, optional
        Default ``"Latency"``.
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
    opts = as_build_options(
        board,
        io_type=io_type,
        reuse_factor=reuse_factor,
        strategy=strategy,
        clock_period_ns=clock_period_ns,
    )
    io_type, strategy = opts.io_type, opts.strategy
    rf_given = opts.reuse_factor
    reuse: int | dict[str, int] = rf_given if isinstance(rf_given, int) else dict(rf_given)
    overrides = dict(precision_overrides or {})
    for name in overrides:
        try:
            graph[name]
        except KeyError:
            raise ConfigError(
                f"precision_overrides names layer {name!r}, which is not in the graph"
            ) from None

    board_obj = opts.board_spec
    backend_name, accel_board = _backend_for(board_obj)
    clock_period_ns = opts.period_ns

    ctx = HlsContext(graph, io_type, strategy, reuse, overrides)
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
    _check_reuse_factors(ctx, backend)

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
        reuse_factor=reuse,
    )
    if write:
        _write(hls_model)
        if tb_input is not None:
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
                    raise InternalError(
                        f"hls4ml changed {layer.name}.{var} from {expected} to {got}"
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
