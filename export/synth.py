"""Vendor synthesis of a ``qnet export`` project: tool detection, resumable steps, report parsing.

A project directory written by ``qnet export`` holds ``hls4ml_prj/`` (an hls4ml project with
``build_prj.tcl`` and ``project.tcl``), ``hwgraph.npz`` and ``qnet_export.json`` (board,
io_type, reuse_factor, strategy). :func:`synthesize` runs named steps -- ``csynth`` (C
synthesis), optionally ``cosim`` (C/RTL co-simulation), ``export`` (IP catalog) and
``bitstream`` (VivadoAccelerator block design, Zynq boards) -- each timed, logged to
``.qnet_synth/<step>.log`` and marked done by an atomically written
``.qnet_synth/<step>.done``; finished steps are skipped unless ``force``.

The tools are looked up in this order: ``vivado_path`` (a directory, its ``bin/``, or the
executable itself), the environment variables of :data:`ENV_VARS`, then ``PATH``.

:func:`parse_csynth_xml` reads the Vivado / Vitis HLS C-synthesis report
(``<top>_csynth.xml``: ``AreaEstimates/Resources``, ``PerformanceEstimates/
SummaryOfOverallLatency``, ``SummaryOfTimingAnalysis/EstimatedClockPeriod``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qnet.errors import ConfigError, FormatError, SynthesisError, ToolNotFoundError
from qnet.hw.atomic import atomic_write

__all__ = [
    "ENV_VARS",
    "TOOLS_BY_BACKEND",
    "CsynthReport",
    "ExportInfo",
    "SynthesisError",
    "SynthResult",
    "StepResult",
    "find_tool",
    "find_csynth_report",
    "parse_csynth_xml",
    "read_export_info",
    "compare_resources",
    "synthesize",
]

#: Environment variables naming a Xilinx install directory (searched in this order).
ENV_VARS = ("QNET_VIVADO_PATH", "XILINX_VITIS", "XILINX_HLS", "XILINX_VIVADO")
#: HLS executables that can run an hls4ml project, per hls4ml backend (first found wins).
TOOLS_BY_BACKEND: dict[str, tuple[str, ...]] = {
    "vivado": ("vivado_hls", "vitis_hls"),
    "vivadoaccelerator": ("vivado_hls", "vitis_hls"),
    "vitis": ("vitis_hls",),
}
_STATE_DIR = ".qnet_synth"


# ----------------------------------------------------------------------------- tool lookup
def _candidates(directory: Path, name: str) -> list[Path]:
    return [directory / name, directory / "bin" / name]


def find_tool(
    names: Sequence[str],
    vivado_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Find the first of ``names`` (e.g. ``("vivado_hls", "vitis_hls")``).

    Parameters
    ----------
    names : sequence of str
        Executable names, in order of preference.
    vivado_path : path, optional
        A Xilinx install directory, its ``bin/``, or an executable (``--vivado-path``).
    env : mapping, optional
        Environment (defaults to ``os.environ``): :data:`ENV_VARS` and ``PATH``.

    Raises
    ------
    ToolNotFoundError
        Naming the tools, every place searched and how to point qnet at an install.
    """
    env = os.environ if env is None else env
    searched: list[str] = []
    if vivado_path is not None:
        given = Path(vivado_path)
        if given.is_file() and os.access(given, os.X_OK) and given.name in names:
            return given
        for name in names:
            for cand in _candidates(given, name):
                if cand.is_file() and os.access(cand, os.X_OK):
                    return cand
        searched.append(f"--vivado-path {given}")
    for var in ENV_VARS:
        value = env.get(var)
        if not value:
            searched.append(f"${var} (unset)")
            continue
        for name in names:
            for cand in _candidates(Path(value), name):
                if cand.is_file() and os.access(cand, os.X_OK):
                    return cand
        searched.append(f"${var}={value}")
    path_value = env.get("PATH", "")
    for name in names:
        found = shutil.which(name, path=path_value)
        if found:
            return Path(found)
    searched.append("PATH")
    raise ToolNotFoundError(
        f"{' / '.join(names)} not found (searched: {', '.join(searched)}). "
        "Install Vivado/Vitis HLS, then put its bin/ directory on PATH, source its "
        "settings64.sh, pass --vivado-path /opt/Xilinx/Vitis_HLS/2023.2, or set "
        "QNET_VIVADO_PATH to the install directory."
    )


# ----------------------------------------------------------------------------- report
@dataclass(frozen=True)
class CsynthReport:
    """The figures of a Vivado / Vitis HLS ``csynth.xml`` report.

    Latencies and intervals are in clock cycles (``None`` where the tool reports ``undef``).
    ``resources`` and ``available`` are keyed ``LUT``, ``FF``, ``DSP``, ``BRAM_18K``, ``URAM``.
    """

    path: str
    tool_version: str
    part: str
    top: str
    target_clock_ns: float | None
    estimated_clock_ns: float | None
    latency_best: int | None
    latency_worst: int | None
    interval_min: int | None
    interval_max: int | None
    resources: dict[str, int]
    available: dict[str, int] = field(default_factory=dict)

    @property
    def fmax_mhz(self) -> float | None:
        """1000 / estimated clock period."""
        return None if not self.estimated_clock_ns else 1000.0 / self.estimated_clock_ns


def _text(root: ET.Element, xpath: str, path: Path, required: bool = True) -> str | None:
    node = root.find(xpath)
    if node is None or node.text is None or not node.text.strip():
        if required:
            raise FormatError(f"{path}: element {xpath} is missing from the csynth report")
        return None
    return node.text.strip()


def _num(text: str | None, cast: Callable[[str], Any], path: Path, what: str) -> Any:
    if text is None or text.lower() in {"undef", "-", "n/a", ""}:
        return None
    try:
        return cast(text.split()[0])
    except ValueError:
        raise FormatError(f"{path}: {what} is {text!r}, not a number") from None


def _resources(node: ET.Element | None, path: Path, what: str) -> dict[str, int]:
    if node is None:
        raise FormatError(f"{path}: element AreaEstimates/{what} is missing from the csynth report")
    out: dict[str, int] = {}
    for child in node:
        tag = {"DSP48E": "DSP", "DSP48": "DSP", "BRAM": "BRAM_18K"}.get(child.tag, child.tag)
        value = _num(child.text, int, path, f"AreaEstimates/{what}/{child.tag}")
        if value is not None:
            out[tag] = value
    for key in ("LUT", "FF", "DSP", "BRAM_18K"):
        if key not in out:
            raise FormatError(f"{path}: AreaEstimates/{what} has no {key} entry")
    out.setdefault("URAM", 0)
    return out


def parse_csynth_xml(path: str | os.PathLike[str]) -> CsynthReport:
    """Parse a Vivado HLS / Vitis HLS C-synthesis XML report.

    Raises
    ------
    FormatError
        Not XML, or a required element is missing (the message names it).
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise FormatError(f"{path}: not a readable csynth XML report ({exc})") from None
    perf = "PerformanceEstimates"
    lat = f"{perf}/SummaryOfOverallLatency"
    return CsynthReport(
        path=str(path),
        tool_version=_text(root, "ReportVersion/Version", path, required=False) or "",
        part=_text(root, "UserAssignments/Part", path, required=False) or "",
        top=_text(root, "UserAssignments/TopModelName", path, required=False) or "",
        target_clock_ns=_num(
            _text(root, "UserAssignments/TargetClockPeriod", path, required=False),
            float,
            path,
            "TargetClockPeriod",
        ),
        estimated_clock_ns=_num(
            _text(root, f"{perf}/SummaryOfTimingAnalysis/EstimatedClockPeriod", path),
            float,
            path,
            "EstimatedClockPeriod",
        ),
        latency_best=_num(
            _text(root, f"{lat}/Best-caseLatency", path), int, path, "Best-caseLatency"
        ),
        latency_worst=_num(
            _text(root, f"{lat}/Worst-caseLatency", path), int, path, "Worst-caseLatency"
        ),
        interval_min=_num(_text(root, f"{lat}/Interval-min", path), int, path, "Interval-min"),
        interval_max=_num(_text(root, f"{lat}/Interval-max", path), int, path, "Interval-max"),
        resources=_resources(root.find("AreaEstimates/Resources"), path, "Resources"),
        available=(
            _resources(root.find("AreaEstimates/AvailableResources"), path, "AvailableResources")
            if root.find("AreaEstimates/AvailableResources") is not None
            else {}
        ),
    )


def _project_tcl(hls_dir: Path) -> tuple[str, str]:
    """(project_name, backend) from hls4ml's ``project.tcl``."""
    tcl = hls_dir / "project.tcl"
    if not tcl.is_file():
        raise FormatError(f"{tcl}: missing; {hls_dir} is not an hls4ml project")
    text = tcl.read_text()
    name = re.search(r'set\s+project_name\s+"([^"]+)"', text)
    backend = re.search(r'set\s+backend\s+"([^"]+)"', text)
    if name is None:
        raise FormatError(f"{tcl}: no 'set project_name' line")
    return name.group(1), (backend.group(1) if backend else "vivado")


def find_csynth_report(hls_dir: str | os.PathLike[str]) -> Path | None:
    """The C-synthesis XML report of an hls4ml project, or ``None`` if not synthesised yet."""
    hls_dir = Path(hls_dir)
    name, backend = _project_tcl(hls_dir)
    top = name + ("_axi" if "accelerator" in backend.lower() else "")
    report_dir = hls_dir / f"{name}_prj" / "solution1" / "syn" / "report"
    for cand in (
        report_dir / f"{top}_csynth.xml",
        report_dir / f"{name}_csynth.xml",
        report_dir / "csynth.xml",
    ):
        if cand.is_file():
            return cand
    return None


# ----------------------------------------------------------------------------- project
@dataclass(frozen=True)
class ExportInfo:
    """What ``qnet_export.json`` says about an exported project."""

    project_dir: Path
    hls_dir: Path
    board: str
    io_type: str
    reuse_factor: Any
    strategy: str
    extra: dict[str, Any] = field(default_factory=dict)


def read_export_info(project_dir: str | os.PathLike[str]) -> ExportInfo:
    """Read ``qnet_export.json`` of a ``qnet export`` project directory.

    Raises
    ------
    FormatError
        Missing directory, file or keys (named in the message).
    """
    project_dir = Path(project_dir)
    meta_path = project_dir / "qnet_export.json"
    if not project_dir.is_dir():
        raise FormatError(
            f"{project_dir}: no such project directory (write one with 'qnet export')"
        )
    if not meta_path.is_file():
        raise FormatError(f"{meta_path}: missing; {project_dir} is not a 'qnet export' project")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(f"{meta_path}: not valid JSON ({exc})") from None
    missing = [k for k in ("board", "io_type", "reuse_factor", "strategy") if k not in meta]
    if missing:
        raise FormatError(f"{meta_path}: missing key(s) {', '.join(missing)}")
    known = {"board", "io_type", "reuse_factor", "strategy"}
    return ExportInfo(
        project_dir=project_dir,
        hls_dir=project_dir / "hls4ml_prj",
        board=str(meta["board"]),
        io_type=str(meta["io_type"]),
        reuse_factor=meta["reuse_factor"],
        strategy=str(meta["strategy"]),
        extra={k: v for k, v in meta.items() if k not in known},
    )


# ----------------------------------------------------------------------------- steps
@dataclass(frozen=True)
class StepResult:
    """One step: its name, seconds taken (of the run that did it), and whether it was skipped."""

    name: str
    seconds: float
    skipped: bool


@dataclass(frozen=True)
class SynthResult:
    """Outcome of :func:`synthesize`."""

    project_dir: Path
    tool: Path
    steps: tuple[StepResult, ...]
    report: CsynthReport | None


def _atomic_write(path: Path, text: str) -> None:
    atomic_write(path, text)


def _build_args(**opts: bool) -> str:
    keys = ("reset", "csim", "synth", "cosim", "validation", "export", "vsynth", "fifo_opt")
    return " ".join(f"{k}={int(opts.get(k, False))}" for k in keys)


def _plan(
    backend: str,
    hls_tool: Path,
    cosim: bool,
    export: bool,
    bitstream: bool,
    board_name: str,
    vivado_path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
) -> list[tuple[str, list[str], dict[str, bool]]]:
    """(step name, command, build options) in order."""
    steps: list[tuple[str, list[str], dict[str, bool]]] = []

    def hls(opts: dict[str, bool]) -> list[str]:
        return [str(hls_tool), "-f", "build_prj.tcl", _build_args(**opts)]

    steps.append(("csynth", hls({"reset": True, "synth": True}), {"reset": True, "synth": True}))
    if cosim:
        opts = {"cosim": True, "validation": True}
        steps.append(("cosim", hls(opts), opts))
    if export:
        steps.append(("export", hls({"export": True}), {"export": True}))
    if bitstream:
        if backend.lower() != "vivadoaccelerator":
            raise ConfigError(
                f"--bitstream needs the VivadoAccelerator backend (board {board_name!r} exports "
                f"with {backend!r}); this backend produces an IP, not a bitstream"
            )
        vivado = find_tool(("vivado",), vivado_path, env)
        steps.append(("bitstream", [str(vivado), "-mode", "batch", "-source", "design.tcl"], {}))
    return steps


def synthesize(
    project_dir: str | os.PathLike[str],
    *,
    cosim: bool = False,
    export: bool = True,
    bitstream: bool = False,
    force: bool = False,
    vivado_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> SynthResult:
    """Run the vendor flow on a ``qnet export`` project, step by step, resumably.

    Parameters
    ----------
    project_dir : path
        Directory written by ``qnet export``.
    cosim, export, bitstream : bool
        Optional steps after C synthesis.
    force : bool
        Redo steps already marked done.
    vivado_path : path, optional
        Where the Xilinx tools are (see :func:`find_tool`).
    env : mapping, optional
        Environment for tool lookup and the tool runs (defaults to ``os.environ``).
    quiet : bool
        Do not call ``log``.
    log : callable, optional
        Receives one line per step event (default: ``print``).

    Raises
    ------
    ToolNotFoundError
        No HLS tool found (exit code 3 in the CLI).
    SynthesisError
        A step exited non-zero (the message names the step and its log file).
    """
    info = read_export_info(project_dir)
    hls_dir = info.hls_dir
    if not (hls_dir / "build_prj.tcl").is_file():
        raise FormatError(f"{hls_dir / 'build_prj.tcl'}: missing; re-run 'qnet export'")
    _, backend = _project_tcl(hls_dir)
    names = TOOLS_BY_BACKEND.get(backend.lower())
    if names is None:
        raise ConfigError(
            f"{hls_dir / 'project.tcl'}: backend {backend!r} has no vendor flow in qnet "
            f"(supported: {', '.join(TOOLS_BY_BACKEND)})"
        )
    tool = find_tool(names, vivado_path, env)
    plan = _plan(backend, tool, cosim, export, bitstream, info.board, vivado_path, env)
    emit = (lambda _msg: None) if quiet else (log or print)
    state = info.project_dir / _STATE_DIR
    state.mkdir(exist_ok=True)
    results: list[StepResult] = []
    run_env = dict(os.environ if env is None else env)
    for name, cmd, opts in plan:
        marker = state / f"{name}.done"
        if marker.is_file() and not force:
            done = json.loads(marker.read_text())
            emit(f"[{name}] already done in {done.get('seconds', 0):.1f} s (use --force to redo)")
            results.append(StepResult(name, float(done.get("seconds", 0.0)), True))
            continue
        marker.unlink(missing_ok=True)
        if backend.lower() == "vitis" and opts:
            # hls4ml's Vitis build_prj.tcl sources build_opt.tcl instead of reading argv
            body = "".join(
                f"    {k:<10} {int(opts.get(k, False))}\n"
                for k in (
                    "reset",
                    "csim",
                    "synth",
                    "cosim",
                    "validation",
                    "export",
                    "vsynth",
                    "fifo_opt",
                )
            )
            _atomic_write(hls_dir / "build_opt.tcl", "array set opt {\n" + body + "}\n")
        emit(f"[{name}] running: {' '.join(cmd)}")
        log_path = state / f"{name}.log"
        start = time.monotonic()
        with open(log_path, "w") as log_fh:
            proc = subprocess.run(
                cmd, cwd=hls_dir, stdout=log_fh, stderr=subprocess.STDOUT, env=run_env, check=False
            )
        seconds = time.monotonic() - start
        if proc.returncode != 0:
            raise SynthesisError(
                f"step {name!r} failed (exit status {proc.returncode}) after {seconds:.1f} s; "
                f"see {log_path}"
            )
        if name == "csynth" and find_csynth_report(hls_dir) is None:
            raise SynthesisError(f"step 'csynth' wrote no csynth.xml report; see {log_path}")
        _atomic_write(marker, json.dumps({"step": name, "seconds": seconds, "command": cmd}))
        emit(f"[{name}] done in {seconds:.1f} s")
        results.append(StepResult(name, seconds, False))
    report_path = find_csynth_report(hls_dir)
    report = parse_csynth_xml(report_path) if report_path else None
    return SynthResult(info.project_dir, tool, tuple(results), report)


def compare_resources(
    estimated: Mapping[str, int | float], measured: Mapping[str, int | float]
) -> list[tuple[str, float, float, float | None]]:
    """Rows ``(resource, estimate, measured, estimate / measured)`` for the common keys."""
    rows = []
    for key in ("LUT", "FF", "DSP", "BRAM_18K", "URAM"):
        if key in estimated and key in measured:
            e, m = float(estimated[key]), float(measured[key])
            rows.append((key, e, m, (e / m) if m else None))
    return rows
