"""Project folders from a model source: the library side of ``qnet export`` and ``qnet rtl``.

:mod:`qnet.export` needs only a HwGraph and build options; loading a checkpoint, lowering it
and picking test-bench inputs from its data set happen here, in the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qnet.errors import QnetError
from qnet.export.project import (
    FORMATS,
    TB_SAMPLES,
    ExportSummary,
    check_export_request,
    random_tb_inputs,
    write_export_project,
)
from qnet.export.verilog import RtlProjectSummary, write_rtl_project
from qnet.hw.boards import Board
from qnet.hw.graph import HwGraph
from qnet.hw.options import DEFAULT_BOARD, BuildOptions, ReuseFactor
from qnet.sources import ModelSource, load_graph, load_model

__all__ = ["export_project", "rtl_project", "tb_inputs"]


def tb_inputs(source: ModelSource, graph: HwGraph, n: int = TB_SAMPLES) -> np.ndarray:
    """Test-bench inputs: the first test samples of the checkpoint's data set, else random
    ones over the input type's range."""
    ckpt = source.checkpoint
    if ckpt is not None and getattr(ckpt, "data_spec", None):
        try:
            from qnet.data import checkpoint_split

            _, x_test, _ = checkpoint_split(ckpt, None, "test")  # the training run's split
            x = np.asarray(x_test[:n], dtype=np.float32)
            # the test bench drives the hardware input: the host preprocessing comes first
            return np.asarray(graph.preprocess(x), dtype=np.float32).astype(np.float64)
        except QnetError:
            pass
    return random_tb_inputs(graph, n)


def export_project(
    model_spec: str | Path,
    out: str | Path,
    board: str | Path | Board | BuildOptions = DEFAULT_BOARD,
    io_type: str | None = None,
    reuse_factor: ReuseFactor | None = None,
    strategy: str | None = None,
    clock_period_ns: float | None = None,
    formats: tuple[str, ...] = FORMATS,
    force: bool = False,
) -> ExportSummary:
    """Load and lower a checkpoint (or ``file.py:function`` model) and write the export folder
    (:func:`qnet.export.project.write_export_project`).

    Parameters
    ----------
    model_spec : str or Path
        Checkpoint file, ``qnet train`` run folder, or ``file.py:function``.
    out, board, io_type, reuse_factor, strategy, clock_period_ns, formats, force
        As :func:`qnet.export.project.write_export_project`.
    """
    from qnet.lowering import lower

    check_export_request(out, formats, force)  # fail before loading anything
    source = load_model(model_spec)
    graph = lower(source.model, source.example_input)
    return write_export_project(
        graph,
        out,
        board=board,
        io_type=io_type,
        reuse_factor=reuse_factor,
        strategy=strategy,
        clock_period_ns=clock_period_ns,
        formats=formats,
        force=force,
        tb_input=tb_inputs(source, graph),
        model=source.model,
        example_input=source.example_input,
        source=str(model_spec),
    )


def rtl_project(
    source: str | Path | HwGraph,
    out: str | Path,
    *,
    pipeline_stages: int = 0,
    force: bool = False,
    board: str | None = None,
) -> RtlProjectSummary:
    """``out/verilog/`` and ``out/hwgraph.npz`` for an HwGraph or any model source of
    :func:`qnet.sources.load_graph` (HwGraph file, project folder, checkpoint or run folder,
    ``file.py:function``); see :func:`qnet.export.verilog.write_rtl_project`."""
    graph = source if isinstance(source, HwGraph) else load_graph(source)
    return write_rtl_project(graph, out, pipeline_stages=pipeline_stages, force=force, board=board)
