"""``qnet export``: one folder with the hls4ml project, the QONNX model and the HwGraph.

Layout of ``--out``::

    hls4ml_prj/          the hls4ml project (firmware/, tb_data/ from qnet's simulator, scripts)
    model.qonnx.onnx     the QONNX export (skipped, with a note, where it is not available)
    hwgraph.npz          HwGraph.save()
    qnet_export.json     board, part, clock, backend, io_type, reuse_factor, strategy,
                         qnet version, input/output types

The folder is built in a temporary sibling and renamed into place (atomic). A non-empty
existing ``out`` is refused without ``force`` (:class:`OutputExistsError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qnet.errors import ConfigError, OutputExistsError, QnetError
from qnet.hw.atomic import atomic_dir
from qnet.hw.boards import Board
from qnet.hw.graph import HwGraph
from qnet.hw.options import DEFAULT_BOARD, BuildOptions, ReuseFactor

if TYPE_CHECKING:
    import torch

__all__ = [
    "ExportSummary",
    "write_export_project",
    "check_export_request",
    "random_tb_inputs",
    "FORMATS",
    "TB_SAMPLES",
]

FORMATS = ("hls4ml", "qonnx")
#: Number of test-bench vectors written to tb_data/.
TB_SAMPLES = 100


@dataclass(frozen=True)
class ExportSummary:
    """What ``qnet export`` wrote."""

    out: Path
    files: tuple[str, ...]
    board: str
    backend: str
    part: str
    clock_period_ns: float
    io_type: str
    reuse_factor: int | dict[str, int]
    strategy: str
    input_type: str
    output_type: str
    layers: int
    notes: tuple[str, ...] = field(default_factory=tuple)


def check_export_request(out: str | Path, formats: tuple[str, ...], force: bool) -> Path:
    """Refuse bad ``formats`` or a non-empty ``out`` (without ``force``) before any work is
    done; returns ``out`` as an absolute path."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(
            f"--format must be one or more of {', '.join(FORMATS)}, got {list(formats)}"
        )
    path = Path(out).absolute()
    _check_out(path, force)
    return path


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"--out {out} exists and is not empty; pass --force to replace it")


def random_tb_inputs(graph: HwGraph, n: int = TB_SAMPLES, seed: int = 0) -> np.ndarray:
    """``n`` test-bench inputs uniform over the input type's range (float32 values, as float64),
    for graphs whose caller has no data set."""
    t = graph.input_type
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(t.min, t.max, size=(n, *graph.input.out_shape))
        .astype(np.float32)
        .astype(np.float64)
    )


def _replace_paths(root: Path, old: str, new: str) -> None:
    """hls4ml writes its output folder into a few text files: point them at the final place."""
    for path in root.rglob("*"):
        if (
            path.is_file()
            and path.suffix in (".yml", ".tcl", ".sh", ".json", ".py")
            and path.stat().st_size < 1 << 20
        ):
            text = path.read_text(errors="replace")
            if old in text:
                path.write_text(text.replace(old, new))


def write_export_project(
    graph: HwGraph,
    out: str | Path,
    board: str | Path | Board | BuildOptions = DEFAULT_BOARD,
    io_type: str | None = None,
    reuse_factor: ReuseFactor | None = None,
    strategy: str | None = None,
    clock_period_ns: float | None = None,
    formats: tuple[str, ...] = FORMATS,
    force: bool = False,
    *,
    tb_input: np.ndarray | None = None,
    model: torch.nn.Module | None = None,
    example_input: torch.Tensor | None = None,
    source: str = "",
) -> ExportSummary:
    """Write the export folder of a lowered graph.

    Loading and lowering a checkpoint is the caller's job (:func:`qnet.projects.export_project`
    does it for ``qnet export``); this function needs only the graph and the build options.

    Parameters
    ----------
    graph : HwGraph
        The hardware graph.
    out : path
        The folder to write (refused if non-empty unless ``force``).
    board, io_type, reuse_factor, strategy, clock_period_ns
        As :func:`qnet.export.hls.to_hls4ml` (``board`` may be the whole
        :class:`~qnet.hw.options.BuildOptions`).
    formats : tuple of {"hls4ml", "qonnx"}
        What to write besides ``hwgraph.npz`` and ``qnet_export.json``.
    force : bool
        Replace an existing non-empty ``out``.
    tb_input : numpy.ndarray, optional
        Test-bench inputs (N, *input shape) for ``tb_data/``; random ones
        (:func:`random_tb_inputs`) when not given.
    model, example_input : optional
        The Brevitas model and an example input, for the QONNX export (without them the
        QONNX model is skipped with a note).
    source : str
        Where the graph came from, recorded in ``qnet_export.json``.

    Returns
    -------
    ExportSummary
    """
    from qnet import __version__
    from qnet.export.hls import as_build_options, to_hls4ml

    out = check_export_request(out, formats, force)
    opts = as_build_options(
        board,
        io_type=io_type,
        reuse_factor=reuse_factor,
        strategy=strategy,
        clock_period_ns=clock_period_ns,
    )
    board_obj = opts.board_spec
    rf = opts.reuse_factor
    if tb_input is None:
        tb_input = random_tb_inputs(graph)

    notes: list[str] = []
    with atomic_dir(out) as tmp:
        export = None
        if "hls4ml" in formats:
            export = to_hls4ml(graph, opts, output_dir=tmp / "hls4ml_prj", tb_input=tb_input)
        if "qonnx" in formats:
            notes.extend(_write_qonnx(model, example_input, tmp / "model.qonnx.onnx"))
        graph.save(tmp / "hwgraph.npz")
        clock = opts.period_ns
        backend = export.backend if export else board_obj.hls4ml_backend
        used_strategy = opts.strategy
        info: dict[str, Any] = {
            "format": "qnet.export",
            "qnet_version": __version__,
            "source": source,
            "board": board_obj.name,
            "part": board_obj.part,
            "backend": backend,
            "clock_period_ns": float(clock),
            "io_type": opts.io_type,
            "reuse_factor": rf if isinstance(rf, int) else dict(rf),
            "strategy": used_strategy,
            "input_type": str(graph.input_type),
            "output_type": str(graph.output_type),
            "input_shape": list(graph.input.out_shape),
            "output_shape": list(graph.output.out_shape),
            "formats": list(formats),
            "notes": notes,
        }
        (tmp / "qnet_export.json").write_text(json.dumps(info, indent=2) + "\n")
        _replace_paths(tmp, str(tmp), str(out))
        files = tuple(sorted(p.name for p in tmp.iterdir()))
    return ExportSummary(
        out=out,
        files=files,
        board=board_obj.name,
        backend=backend,
        part=board_obj.part,
        clock_period_ns=float(clock),
        io_type=opts.io_type,
        reuse_factor=info["reuse_factor"],
        strategy=used_strategy,
        input_type=str(graph.input_type),
        output_type=str(graph.output_type),
        layers=len(graph.layers),
        notes=tuple(notes),
    )


def _write_qonnx(model: torch.nn.Module | None, example_input: Any, path: Path) -> list[str]:
    if model is None or example_input is None:
        return ["QONNX model not written: no Brevitas model given (HwGraph only)"]
    from qnet.export.qonnx import export_qonnx

    try:
        export_qonnx(model, example_input, path)
    except QnetError as exc:
        return [f"QONNX model not written: {exc}"]
    except Exception as exc:  # brevitas/onnx failures on some layers (e.g. QuantLSTM)
        return [f"QONNX model not written: {type(exc).__name__}: {exc}"]
    return []
