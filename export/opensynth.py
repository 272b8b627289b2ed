"""Synthesis with the open tools: yosys (every family), nextpnr + icepack / ecppack (iCE40, ECP5).

:func:`run_open_flow` takes a project directory written by ``qnet rtl`` (``verilog/`` from
:func:`qnet.export.verilog.to_verilog`, ``hwgraph.npz``) and runs named, timed, resumable
steps into ``<project>/open_synth/<board>/``:

``yosys``
    ``synth_xilinx -family xc7|xcup`` (7-series / UltraScale+), ``synth_ice40``,
    ``synth_ecp5``, then ``stat -json``: resources after synthesis.
``nextpnr``
    place and route for iCE40 (``nextpnr-ice40``) and ECP5 (``nextpnr-ecp5``): resources
    after packing/routing (counted in the routed netlist) and the achieved fmax.
``bitstream``
    ``icepack`` (iCE40, ``design.bin``) / ``ecppack`` (ECP5, ``design.bit``).

The tools are found by :func:`qnet.export.open_tools.find_open_tool` (a native build on
``PATH`` first, else the YoWASP one from pip; ``QNET_OPEN_TOOLS`` forces one kind) and the
report says which one ran and its version. YoWASP maps ``/tmp`` to a private folder, so every
path handed to a tool is relative to the step's working directory. Their outputs are read by
:mod:`qnet.export.open_parse`.

The model's ports are far wider than any package has pins, so synthesis wraps it in a small
harness: a 1-bit-in shift register drives ``model_inp``, ``model_out`` is registered and
XOR-reduced to one output pin. Every input and output bit stays live, and the reported fmax
is the register-to-register delay through the model. The harness costs at most
``n_in_bits + n_out_bits`` flip-flops (reported as ``harness_ff``; yosys removes registers of
constant or duplicate output bits) and an XOR tree of about
``n_out_bits / (lut_inputs - 1)`` LUTs; ``resources`` are the counts of the whole harness.

Each step writes a done marker (JSON with its results and wall time) only after its outputs
are in place (written under a temporary name, then renamed), so an interrupted flow resumes
at the first unfinished step; ``force=True`` reruns everything. The flow ends by writing
``synth_report.json`` (:meth:`OpenSynthReport.to_dict`): resources after synthesis and after
place and route, fmax, tools and versions, wall time per step, and the rtl-flow estimate
(:func:`qnet.hw.estimate` with ``flow="rtl"``) with its ratio to the measured counts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qnet.errors import BoardError, FormatError, OpenSynthError, QnetError
from qnet.export.open_parse import (
    parse_nextpnr_fmax,
    parse_yosys_stat,
    resources_from_cells,
    resources_from_routed,
)
from qnet.export.open_tools import OpenTool, find_open_tool, yowasp_cache_dir
from qnet.hw.atomic import atomic_write

__all__ = [
    "OpenSynthReport",
    "OpenSynthError",
    "run_open_flow",
    "FAMILY_TOOLS",
    "RESOURCE_KEYS",
]

_XILINX_FAMILIES = {
    "zynq7000": "xc7",
    "artix7": "xc7",
    "kintex7": "xc7",
    "zynquplus": "xcup",
    "kintexuplus": "xcup",
    "virtexuplus": "xcup",
}
_LATTICE_FAMILIES = ("ice40", "ecp5")
#: Tools each family needs, in flow order.
FAMILY_TOOLS = {
    "ice40": ("yosys", "nextpnr-ice40", "icepack"),
    "ecp5": ("yosys", "nextpnr-ecp5", "ecppack"),
}
RESOURCE_KEYS = ("LUT", "FF", "CARRY", "DSP", "BRAM_18K")


@dataclass(frozen=True)
class OpenSynthReport:
    """Results of :func:`run_open_flow` (also written as ``synth_report.json``).

    Attributes
    ----------
    board : str
        Board name.
    family : str
        Device family.
    resources : dict
        ``LUT``, ``FF``, ``CARRY``, ``DSP``, ``BRAM_18K`` (and ``MUX`` where the family has
        wide-mux cells; keys as :meth:`qnet.hw.estimator.Estimate.resources`), counted by yosys
        ``stat`` on the harnessed design after synthesis.
    cells : dict
        Raw yosys cell counts.
    fmax_mhz : float or None
        nextpnr's achieved maximum frequency (iCE40/ECP5); None when not placed and routed.
    steps : list of (name, seconds)
        Steps in order with their durations in this call (0.0 for a step resumed from its
        marker; ``step_seconds`` keeps the wall time of the run that did it).
    harness_ff : int
        Upper bound on the flip-flops of the synthesis harness included in ``resources['FF']``
        (one per port bit; a purely combinational model has no other flip-flops).
    outputs : dict
        Files written (synthesised netlist, routed design, bitstream, report), by kind.
    notes : list of str
        Why a step was skipped (e.g. the design does not fit the device).
    part : str
        Device part of the board.
    target_mhz : float or None
        Clock constraint given to nextpnr (the board's default clock).
    pnr_resources : dict or None
        ``LUT`` (LUTs in use), ``FF``, ``CARRY`` (carry cells: SB_CARRY / CCU2C), ``DSP``,
        ``BRAM_18K`` and ``CELLS`` (logic cells occupied: ICESTORM_LC / TRELLIS_COMB) counted
        in nextpnr's routed netlist; None when not placed and routed.
    tools : dict
        ``{tool: {"path", "source", "version"}}`` of the tools that ran.
    step_seconds : dict
        Wall time of each finished step as measured when it ran (resumed steps included).
    estimate : dict or None
        The rtl-flow estimate (:func:`qnet.hw.estimate`, ``flow="rtl"``) of the
        project's ``hwgraph.npz``: ``LUT``, ``FF``, ``CARRY``, ``DSP``, ``BRAM_18K``.
    ratio : dict
        ``{"synth": {key: estimate / yosys}, "pnr": {key: estimate / P&R}}`` for nonzero
        measured counts.
    yowasp_cache : str or None
        Where YoWASP keeps its compiled tools, when a YoWASP tool ran.
    """

    board: str
    family: str
    resources: dict[str, int]
    cells: dict[str, int]
    fmax_mhz: float | None
    steps: list[tuple[str, float]]
    harness_ff: int
    outputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    part: str = ""
    target_mhz: float | None = None
    pnr_resources: dict[str, int] | None = None
    tools: dict[str, dict[str, str]] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)
    estimate: dict[str, int] | None = None
    ratio: dict[str, dict[str, float]] = field(default_factory=dict)
    yowasp_cache: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (the content of ``synth_report.json``)."""
        out = asdict(self)
        out["steps"] = [
            {"name": n, "seconds": self.step_seconds.get(n, s), "resumed": s == 0.0}
            for n, s in self.steps
        ]
        out["synth_resources"] = out.pop("resources")
        return out


# ------------------------------------------------------------------------------ flow
def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def _run(cmd: list[str], cwd: Path, log: Path, step: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    _atomic_text(log, out)
    if proc.returncode != 0:
        raise OpenSynthError(
            f"open flow step {step!r} failed ({Path(cmd[0]).name} exit {proc.returncode}); log {log}:\n"
            + "\n".join(out.strip().splitlines()[-25:])
        )
    return out


def _rel(path: Path, cwd: Path) -> str:
    """``path`` relative to ``cwd``: YoWASP tools see the host's /tmp under another name."""
    return os.path.relpath(Path(path).resolve(), Path(cwd).resolve())


def _harness(top: str, n_in_bits: int, n_out_bits: int, pipelined: bool) -> str:
    clk = "        .clk(clk),\n" if pipelined else ""
    shift = f"{{sr[{n_in_bits - 2}:0], din}}" if n_in_bits > 1 else "din"
    return f"""// qnet synthesis harness: 1-bit shift register in, registered XOR-reduced output.
module qnet_harness (
    input clk,
    input din,
    output dout
);
    reg [{n_in_bits - 1}:0] sr;
    always @(posedge clk) sr <= {shift};
    wire [{n_out_bits - 1}:0] y;
    {top} dut (
{clk}        .model_inp(sr),
        .model_out(y)
    );
    reg [{n_out_bits - 1}:0] yr;
    always @(posedge clk) yr <= y;
    assign dout = ^yr;
endmodule
"""


@dataclass
class _Ctx:
    project: Path
    work: Path
    board: Any
    force: bool
    quiet: bool
    tools: dict[str, OpenTool]
    steps: list[tuple[str, float]] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    used: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def marker(self, step: str) -> Path:
        return self.work / f".done-{step}.json"

    def done(self, step: str) -> dict[str, Any] | None:
        m = self.marker(step)
        if self.force or not m.is_file():
            return None
        try:
            data = json.loads(m.read_text())
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        self.steps.append((step, 0.0))
        self.step_seconds[step] = float(data.get("seconds", 0.0))
        self.used.update(data.get("tools", {}))
        if not self.quiet:
            print(f"[open flow] {step}: done before, resumed", file=sys.stderr)
        return data

    def tool(self, name: str) -> str:
        t = self.tools[name]
        self.used[name] = {"path": t.path, "source": t.source, "version": t.version}
        return t.path

    def finish(
        self, step: str, seconds: float, data: dict[str, Any], names: tuple[str, ...]
    ) -> None:
        data = {
            **data,
            "seconds": round(seconds, 2),
            "tools": {n: self.used[n] for n in names if n in self.used},
        }
        _atomic_text(self.marker(step), json.dumps(data, indent=2))
        self.steps.append((step, round(seconds, 2)))
        self.step_seconds[step] = round(seconds, 2)
        if not self.quiet:
            print(f"[open flow] {step}: {seconds:.1f} s", file=sys.stderr)


def _synth_command(board: Any, family: str) -> tuple[str, str]:
    """(yosys synth command, kind) for the board."""
    flow = getattr(board, "open_flow", None)
    if family in _XILINX_FAMILIES:
        args = (
            flow.yosys_args
            if flow is not None and flow.yosys_args
            else f"-family {_XILINX_FAMILIES[family]}"
        )
        return f"synth_xilinx {args} -flatten -top qnet_harness", "xilinx"
    if family == "ice40":
        args = flow.yosys_args if flow is not None else ""
        return f"synth_ice40 {args} -top qnet_harness -json design.json", "ice40"
    if family == "ecp5":
        args = flow.yosys_args if flow is not None else ""
        return f"synth_ecp5 {args} -top qnet_harness -json design.json", "ecp5"
    raise BoardError(
        f"board {board.name!r}: family {family!r} has no open synthesis flow; supported: "
        f"{', '.join(sorted(_XILINX_FAMILIES))}, {', '.join(_LATTICE_FAMILIES)}"
    )


def _step_yosys(ctx: _Ctx, meta: dict[str, Any], files: list[Path]) -> dict[str, Any]:
    prior = ctx.done("yosys")
    if prior is not None and (ctx.work / prior.get("netlist", "")).exists():
        return prior
    if prior is not None:  # marker without its netlist: redo
        ctx.steps.pop()
    yosys = ctx.tool("yosys")
    family = ctx.board.family
    synth, kind = _synth_command(ctx.board, family)
    n_in_bits = int(meta["n_inputs"]) * _width(meta["input_type"])
    n_out_bits = int(meta["n_outputs"]) * _width(meta["output_type"])
    harness = ctx.work / "qnet_harness.v"
    _atomic_text(harness, _harness(meta["top"], n_in_bits, n_out_bits, int(meta["latency"]) > 0))
    for mem in (Path(files[0]).parents[1] / "memfiles").glob("*.mem") if files else ():
        shutil.copy(mem, ctx.work / mem.name)  # table ROMs: $readmemh reads from yosys' cwd
    reads = "\n".join(f"read_verilog -defer {_rel(p, ctx.work)}" for p in files)
    netlist = "design.json" if kind in _LATTICE_FAMILIES else "design_xilinx.json"
    script = f"""{reads}
read_verilog -defer qnet_harness.v
hierarchy -top qnet_harness
{synth}
tee -q -o stat.json stat -json
tee -q -o stat.txt stat
"""
    if kind == "xilinx":
        script += f"write_json {netlist}\n"
    _atomic_text(ctx.work / "synth.ys", script)
    t0 = time.perf_counter()
    for stale in ("design.json", "design_xilinx.json", "stat.json", "stat.txt"):
        (ctx.work / stale).unlink(missing_ok=True)
    _run([yosys, "-q", "-l", "yosys.log", "synth.ys"], ctx.work, ctx.work / "yosys.out", "yosys")
    banner = re.search(r"^\s*(Yosys \d[^\n]*?)\s*$", (ctx.work / "yosys.log").read_text(), re.M)
    if banner and ctx.tools["yosys"].source == "native":
        ctx.used["yosys"]["version"] = banner.group(1)
    stat_json = ctx.work / "stat.json"
    text = stat_json.read_text() if stat_json.exists() else (ctx.work / "stat.txt").read_text()
    cells = parse_yosys_stat(text)
    data = {
        "cells": cells,
        "resources": resources_from_cells(cells, family),
        "harness_ff": n_in_bits + n_out_bits,
        "netlist": netlist,
    }
    ctx.finish("yosys", time.perf_counter() - t0, data, ("yosys",))
    return data


def _width(spelling: str) -> int:
    from qnet.hw.fixed import FixedType

    return FixedType.parse(spelling).width


def _step_nextpnr(ctx: _Ctx, synth: dict[str, Any]) -> dict[str, Any] | None:
    family = ctx.board.family
    flow = getattr(ctx.board, "open_flow", None)
    prior = ctx.done("nextpnr")
    if prior is not None:
        return prior
    lut_cap = int(ctx.board.resources.lut)
    res = synth["resources"]
    # an ECP5 CCU2C takes two LUT4 sites; an iCE40 SB_CARRY shares its logic cell with a LUT
    used = int(res["LUT"]) + (2 * int(res.get("CARRY", 0)) if family == "ecp5" else 0)
    if used > lut_cap:
        ctx.notes.append(
            f"place and route skipped: the design needs {used} LUT sites, the {ctx.board.part} has {lut_cap}"
        )
        return None
    name = "nextpnr-ice40" if family == "ice40" else "nextpnr-ecp5"
    tool = ctx.tool(name)
    if family == "ice40":
        device = (flow.device if flow is not None and flow.device else "up5k").lower()
        package = flow.package if flow is not None and flow.package else "sg48"
        out_name, out_flag = "design.asc", "--asc"
    else:
        device = (flow.device if flow is not None and flow.device else "85k").lower()
        package = flow.package if flow is not None and flow.package else "CABGA381"
        out_name, out_flag = "design.config", "--textcfg"
    tmp_out = f".{out_name}.tmp"
    freq = float(ctx.board.default_clock_mhz)
    cmd = [tool, f"--{device}", "--package", package]
    cmd += ["--json", synth.get("netlist", "design.json"), out_flag, tmp_out]
    cmd += ["--freq", str(freq), "--timing-allow-fail", "--seed", "1"]
    cmd += ["--report", "pnr_report.json", "--write", ".routed.json.tmp"]
    t0 = time.perf_counter()
    try:
        log = _run(cmd, ctx.work, ctx.work / "nextpnr.log", "nextpnr")
    except OpenSynthError:
        full = (ctx.work / "nextpnr.log").read_text()
        over = [
            f"{name} {used}/{avail}"
            for name, used, avail in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)", full)
            if int(used) > int(avail)
        ]
        if not over:
            raise
        ctx.notes.append(
            f"place and route failed: the design does not fit the {ctx.board.part} ({', '.join(over)})"
        )
        return None
    routed = json.loads((ctx.work / ".routed.json.tmp").read_text())
    os.replace(ctx.work / ".routed.json.tmp", ctx.work / "routed.json")
    os.replace(ctx.work / tmp_out, ctx.work / out_name)
    fmax = parse_nextpnr_fmax(log)
    try:
        clocks = json.loads((ctx.work / "pnr_report.json").read_text()).get("fmax", {})
        achieved = [float(c["achieved"]) for c in clocks.values() if "achieved" in c]
        if achieved:
            fmax = round(min(achieved), 2)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    data = {
        "fmax_mhz": fmax,
        "routed": out_name,
        "target_mhz": freq,
        "resources": resources_from_routed(routed, family),
    }
    ctx.finish("nextpnr", time.perf_counter() - t0, data, (name,))
    return data


def _step_bitstream(ctx: _Ctx, pnr: dict[str, Any]) -> dict[str, Any]:
    prior = ctx.done("bitstream")
    if prior is not None:
        return prior
    name, out = (
        ("icepack", "design.bin") if ctx.board.family == "ice40" else ("ecppack", "design.bit")
    )
    tool = ctx.tool(name)
    t0 = time.perf_counter()
    _run([tool, pnr["routed"], f".{out}.tmp"], ctx.work, ctx.work / "bitstream.log", "bitstream")
    os.replace(ctx.work / f".{out}.tmp", ctx.work / out)
    data = {"bitstream": out}
    ctx.finish("bitstream", time.perf_counter() - t0, data, (name,))
    return data


def _rtl_estimate(base: Path, board: Any, latency: int) -> tuple[dict[str, int] | None, str | None]:
    """The rtl-flow estimate of ``base/hwgraph.npz`` (None and a note when there is none)."""
    graph_file = base / "hwgraph.npz"
    if not graph_file.is_file():
        return None, f"no rtl-flow estimate: {graph_file} is missing"
    from qnet.hw import estimate
    from qnet.hw.graph import HwGraph

    try:
        est = estimate(HwGraph.load(graph_file), board, flow="rtl", pipeline_stages=latency)
    except QnetError as exc:
        return None, f"no rtl-flow estimate: {exc}"
    return {**{k: int(v) for k, v in est.resources().items()}, "CARRY": int(est.carry)}, None


def _ratios(est: Mapping[str, int], measured: Mapping[str, int] | None) -> dict[str, float]:
    if not measured:
        return {}
    return {
        k: round(est[k] / measured[k], 3) for k in RESOURCE_KEYS if est.get(k) and measured.get(k)
    }  # no FF ratio for combinational logic (0 estimated; the harness' flops measured)


def run_open_flow(
    project_dir: str | os.PathLike[str],
    board: Any,
    *,
    force: bool = False,
    quiet: bool = False,
    tools: str | None = None,
    place_and_route: bool = True,
) -> OpenSynthReport:
    """Synthesise (and for iCE40/ECP5 place, route and pack) a ``qnet rtl`` project.

    Parameters
    ----------
    project_dir : path
        Directory holding ``verilog/`` (from :func:`~qnet.export.verilog.to_verilog`), or the
        ``verilog`` directory itself.
    board : Board or str
        Target board (:func:`qnet.hw.boards.load_board` name or object).
    force : bool
        Rerun steps that already finished.
    quiet : bool
        No per-step messages on stderr.
    tools : {"auto", "native", "yowasp"}, optional
        Which tool builds to use (default ``$QNET_OPEN_TOOLS`` or ``auto``: native on PATH
        first, else YoWASP); see :func:`find_open_tool`.
    place_and_route : bool
        False: stop after yosys (resource counts only; no fmax, no bitstream).

    Returns
    -------
    OpenSynthReport
        Also written to ``<project>/open_synth/<board>/synth_report.json``.

    Raises
    ------
    ToolNotFoundError
        A tool the family needs is not installed (neither native nor YoWASP).
    BoardError
        The board's family has no open flow.
    OpenSynthError
        A tool failed (with the end of its log).
    """
    from qnet.export.verilog import VerilogProject
    from qnet.hw.boards import load_board

    board = load_board(board)
    project = Path(project_dir)
    vdir = project / "verilog" if (project / "verilog").is_dir() else project
    if not (vdir / "qnet_rtl.json").is_file():
        raise FormatError(
            f"{project}: no Verilog project found (expected {project / 'verilog' / 'qnet_rtl.json'}); "
            "write one with: qnet rtl CHECKPOINT --out PROJECT"
        )
    vp = VerilogProject.load(vdir)
    meta = json.loads((vdir / "qnet_rtl.json").read_text())
    family = board.family
    _synth_command(board, family)  # validates the family before any tool runs
    needed = FAMILY_TOOLS.get(family, ("yosys",)) if place_and_route else ("yosys",)
    found = {n: find_open_tool(n, tools) for n in needed}
    base = project if vdir != project else project.parent
    work = base / "open_synth" / board.name
    work.mkdir(parents=True, exist_ok=True)
    ctx = _Ctx(project, work, board, force, quiet, found)
    files = [p.resolve() for p in vp.verilog_files()]
    synth = _step_yosys(ctx, meta, files)
    outputs = {"netlist": str(work / synth["netlist"]), "stat": str(work / "stat.json")}
    fmax, target, pnr_res = None, None, None
    if family in _LATTICE_FAMILIES and not place_and_route:
        ctx.notes.append("place and route not requested: resources are yosys' mapping")
    elif family in _LATTICE_FAMILIES:
        pnr = _step_nextpnr(ctx, synth)
        if pnr is not None:
            fmax, target = pnr.get("fmax_mhz"), pnr.get("target_mhz")
            pnr_res = {k: int(v) for k, v in pnr.get("resources", {}).items()} or None
            outputs["routed"] = str(work / pnr["routed"])
            bit = _step_bitstream(ctx, pnr)
            outputs["bitstream"] = str(work / bit["bitstream"])
    else:
        ctx.notes.append(
            "no open place and route for Xilinx devices: resources are yosys' mapping, fmax unknown"
        )
    est, why = _rtl_estimate(base, board, int(meta.get("latency", 0)))
    if why:
        ctx.notes.append(why)
    resources = {k: int(v) for k, v in synth["resources"].items()}
    ratio = {}
    if est is not None:
        ratio = {"synth": _ratios(est, resources), "pnr": _ratios(est, pnr_res)}
    yowasp = any(t.get("source") == "yowasp" for t in ctx.used.values())
    report_file = work / "synth_report.json"
    outputs["report"] = str(report_file)
    report = OpenSynthReport(
        board=board.name,
        family=family,
        resources=resources,
        cells={k: int(v) for k, v in synth["cells"].items()},
        fmax_mhz=fmax,
        steps=ctx.steps,
        harness_ff=int(synth["harness_ff"]),
        outputs=outputs,
        notes=ctx.notes,
        part=str(board.part),
        target_mhz=target,
        pnr_resources=pnr_res,
        tools=dict(ctx.used),
        step_seconds=dict(ctx.step_seconds),
        estimate=est,
        ratio=ratio,
        yowasp_cache=str(yowasp_cache_dir()) if yowasp else None,
    )
    _atomic_text(report_file, json.dumps(report.to_dict(), indent=2) + "\n")
    return report
