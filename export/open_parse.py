"""Reading the open tools' results: yosys cell statistics, nextpnr's fmax and routed netlist.

Pure functions from a tool's text or JSON output to resource counts (``LUT``, ``FF``,
``CARRY``, ``DSP``, ``BRAM_18K``, per device family), used by
:func:`qnet.export.opensynth.run_open_flow`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from qnet.errors import BoardError, FormatError

__all__ = [
    "parse_yosys_stat",
    "parse_nextpnr_fmax",
    "resources_from_cells",
    "resources_from_routed",
]


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
