"""FPGA boards as data: one TOML file per board, checked against a schema on load.

A board file (``boards/<name>.toml``, shipped as package data of ``qnet.boards``) looks like::

    name = "pynq-z2"                      # unique, lower case
    vendor = "TUL / Xilinx"
    family = "zynq7000"                   # one of FAMILIES (sets DSP and LUT geometry)
    part = "xc7z020clg400-1"              # full part number
    default_clock_mhz = 100.0
    hls4ml_backend = "VivadoAccelerator"  # one of HLS4ML_BACKENDS; "none" for open-tool boards
    hls4ml_board = "pynq-z2"              # optional: VivadoAccelerator board name
    interface = "axi-stream"              # one of INTERFACES

    [resources]                           # all required, integers >= 0
    lut = 53200
    ff = 106400
    dsp = 220
    bram_18k = 280                        # 18-Kbit block RAM (or 18-Kbit equivalents)
    uram = 0

    [open_flow]                           # optional: open-source synthesis (yosys / nextpnr)
    yosys_synth = "synth_xilinx"
    yosys_args = "-family xc7"            # optional
    nextpnr = "nextpnr-ice40"             # optional; device, package, bram_blocks, ... too

Any unknown key, missing field, wrong type, negative count or duplicate board name raises
:class:`qnet.errors.BoardError` naming the file and the field.

Why the hls4ml fields are checked here: ``hls4ml_backend`` / ``hls4ml_board`` are facts about
the board (which vendor flow targets it), read by the export, and a board file is validated
once, where it is loaded, so an error names the file and the field instead of surfacing
later inside an export. The checks are only consistency rules of the data (VivadoAccelerator
needs a board name; a family without a vendor HLS tool has no hls4ml backend); how hls4ml is
driven lives in ``qnet.export.hls``.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from qnet.errors import BoardError

__all__ = [
    "Board",
    "Resources",
    "OpenFlow",
    "Family",
    "FAMILIES",
    "HLS4ML_BACKENDS",
    "INTERFACES",
    "load_board",
    "list_boards",
    "parse_board",
]


@dataclass(frozen=True)
class Family:
    """Device-family facts the estimator needs.

    Attributes
    ----------
    name : str
        Family key used in board files.
    dsp_a_bits, dsp_b_bits : int
        Signed operand widths of one hard multiplier (DSP48E1: 25x18, DSP48E2: 27x18,
        iCE40 SB_MAC16: 16x16, ECP5 MULT18X18D: 18x18).
    lut_inputs : int
        Inputs per LUT (6 on Xilinx 7-series/UltraScale+, 4 on iCE40/ECP5).
    bram_bits : int
        Bits per counted block RAM unit (an 18-Kbit block on every family here).
    vendor_hls : bool
        Whether a vendor HLS tool (Vivado/Vitis HLS) targets this family.
    """

    name: str
    dsp_a_bits: int
    dsp_b_bits: int
    lut_inputs: int
    bram_bits: int = 18 * 1024
    vendor_hls: bool = True


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("zynq7000", 25, 18, 6),
        Family("artix7", 25, 18, 6),
        Family("kintex7", 25, 18, 6),
        Family("zynquplus", 27, 18, 6),
        Family("kintexuplus", 27, 18, 6),
        Family("virtexuplus", 27, 18, 6),
        Family("ice40", 16, 16, 4, vendor_hls=False),
        Family("ecp5", 18, 18, 4, vendor_hls=False),
    )
}

#: hls4ml backends a board may name; "none" means the board is for the RTL flow only.
HLS4ML_BACKENDS = ("Vivado", "VivadoAccelerator", "Vitis", "none")
#: Host interfaces.
INTERFACES = ("axi-stream", "axi-lite", "none")


#: Resource names as the estimate, the board and the synthesis reports key them.
RESOURCE_KEYS = ("LUT", "FF", "DSP", "BRAM_18K", "URAM")


def resource_dict(obj: Any) -> dict[str, int]:
    """``{"LUT": obj.lut, "FF": obj.ff, ...}`` for any object with those attributes."""
    return {key: int(getattr(obj, key.lower())) for key in RESOURCE_KEYS}


@dataclass(frozen=True)
class Resources:
    """Programmable-logic resources of a device (absolute counts)."""

    lut: int
    ff: int
    dsp: int
    bram_18k: int
    uram: int

    def as_dict(self) -> dict[str, int]:
        """Resources keyed like the estimate and the synthesis report (``LUT``, ``FF``, ...)."""
        return resource_dict(self)


@dataclass(frozen=True)
class OpenFlow:
    """How the open-source tools (yosys, nextpnr) target this board."""

    yosys_synth: str
    yosys_args: str = ""
    nextpnr: str | None = None
    device: str | None = None
    package: str | None = None
    bram_blocks: int | None = None
    bram_block_bits: int | None = None
    spram_blocks: int | None = None
    spram_block_bits: int | None = None


@dataclass(frozen=True)
class Board:
    """One FPGA board: its device, default clock, resources and hls4ml target."""

    name: str
    vendor: str
    family: str
    part: str
    default_clock_mhz: float
    resources: Resources
    hls4ml_backend: str
    interface: str
    hls4ml_board: str | None = None
    open_flow: OpenFlow | None = None
    source: str = ""

    @property
    def family_info(self) -> Family:
        """The :class:`Family` record of this board's device family."""
        return FAMILIES[self.family]

    @property
    def has_hls4ml(self) -> bool:
        """Whether hls4ml can target this board."""
        return self.hls4ml_backend != "none"


# ---------------------------------------------------------------------------- schema

# field -> (accepted python types, required)
_TOP: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), True),
    "vendor": ((str,), True),
    "family": ((str,), True),
    "part": ((str,), True),
    "default_clock_mhz": ((int, float), True),
    "hls4ml_backend": ((str,), True),
    "hls4ml_board": ((str,), False),
    "interface": ((str,), True),
    "resources": ((dict,), True),
    "open_flow": ((dict,), False),
}
_RESOURCES = ("lut", "ff", "dsp", "bram_18k", "uram")
_OPEN_FLOW: dict[str, tuple[tuple[type, ...], bool]] = {
    "yosys_synth": ((str,), True),
    "yosys_args": ((str,), False),
    "nextpnr": ((str,), False),
    "device": ((str,), False),
    "package": ((str,), False),
    "bram_blocks": ((int,), False),
    "bram_block_bits": ((int,), False),
    "spram_blocks": ((int,), False),
    "spram_block_bits": ((int,), False),
}


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join("number" if t is float else t.__name__ for t in types)


def _check_table(
    data: dict[str, Any], schema: dict[str, tuple[tuple[type, ...], bool]], where: str, prefix: str
) -> None:
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise BoardError(
            f"{where}: unknown field '{prefix}{unknown[0]}'; accepted fields: "
            f"{', '.join(prefix + k for k in schema)}"
        )
    for key, (types, required) in schema.items():
        if key not in data:
            if required:
                raise BoardError(f"{where}: missing required field '{prefix}{key}'")
            continue
        value = data[key]
        # bool is an int subclass: refuse it where a number is expected
        if isinstance(value, bool) or not isinstance(value, types):
            raise BoardError(
                f"{where}: field '{prefix}{key}' must be a {_type_name(types)}, "
                f"got {type(value).__name__} {value!r}"
            )
        if isinstance(value, int | float) and value < 0:
            raise BoardError(f"{where}: field '{prefix}{key}' must be >= 0, got {value!r}")


def parse_board(data: dict[str, Any], where: str = "<board>") -> Board:
    """Check a board table (as read from TOML) against the schema and build a :class:`Board`.

    Parameters
    ----------
    data : dict
        The parsed TOML document.
    where : str
        File name used in error messages.

    Raises
    ------
    BoardError
        Unknown key, missing field, wrong type, negative count, unknown family/backend/interface.
    """
    _check_table(data, _TOP, where, "")
    res = data["resources"]
    _check_table(res, {k: ((int,), True) for k in _RESOURCES}, where, "resources.")
    if not data["name"].strip():
        raise BoardError(f"{where}: field 'name' must not be empty")
    if data["default_clock_mhz"] <= 0:
        raise BoardError(
            f"{where}: field 'default_clock_mhz' must be > 0, got {data['default_clock_mhz']!r}"
        )
    if data["family"] not in FAMILIES:
        raise BoardError(
            f"{where}: field 'family' is {data['family']!r}; known families: {', '.join(FAMILIES)}"
        )
    if data["hls4ml_backend"] not in HLS4ML_BACKENDS:
        raise BoardError(
            f"{where}: field 'hls4ml_backend' is {data['hls4ml_backend']!r}; accepted: "
            f"{', '.join(repr(b) for b in HLS4ML_BACKENDS)} ('none' for boards without hls4ml)"
        )
    if data["interface"] not in INTERFACES:
        raise BoardError(
            f"{where}: field 'interface' is {data['interface']!r}; accepted: {', '.join(INTERFACES)}"
        )
    if data["hls4ml_backend"] == "VivadoAccelerator" and "hls4ml_board" not in data:
        raise BoardError(
            f"{where}: field 'hls4ml_board' is required with hls4ml_backend = 'VivadoAccelerator' "
            "(e.g. 'pynq-z2', 'zcu102', 'alveo-u250')"
        )
    if data["hls4ml_backend"] == "none" and "hls4ml_board" in data:
        raise BoardError(f"{where}: field 'hls4ml_board' is set but hls4ml_backend is 'none'")
    if data["hls4ml_backend"] != "none" and not FAMILIES[data["family"]].vendor_hls:
        raise BoardError(
            f"{where}: field 'hls4ml_backend' is {data['hls4ml_backend']!r} but family "
            f"{data['family']!r} has no vendor HLS tool; use hls4ml_backend = 'none'"
        )
    open_flow = None
    if "open_flow" in data:
        _check_table(data["open_flow"], _OPEN_FLOW, where, "open_flow.")
        open_flow = OpenFlow(**data["open_flow"])
    return Board(
        name=data["name"],
        vendor=data["vendor"],
        family=data["family"],
        part=data["part"],
        default_clock_mhz=float(data["default_clock_mhz"]),
        resources=Resources(**{k: res[k] for k in _RESOURCES}),
        hls4ml_backend=data["hls4ml_backend"],
        interface=data["interface"],
        hls4ml_board=data.get("hls4ml_board"),
        open_flow=open_flow,
        source=where,
    )


def _read_file(path: Path | Any, where: str) -> Board:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BoardError(f"{where}: cannot read board file ({exc.strerror})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BoardError(f"{where}: not valid TOML ({exc})") from exc
    return parse_board(data, where)


@cache
def _shipped() -> tuple[Board, ...]:
    boards: list[Board] = []
    seen: dict[str, str] = {}
    root = importlib.resources.files("qnet.boards")
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        where = f"boards/{entry.name}"
        board = _read_file(entry, where)
        if board.name in seen:
            raise BoardError(
                f"{where}: field 'name' = {board.name!r} duplicates the board in {seen[board.name]}"
            )
        seen[board.name] = where
        boards.append(board)
    return tuple(boards)


def list_boards() -> list[Board]:
    """All boards shipped in ``qnet.boards``, sorted by file name.

    Raises
    ------
    BoardError
        If a shipped file is malformed or two files share a name.
    """
    return list(_shipped())


def load_board(name_or_path: str | Path | Board) -> Board:
    """A board by name (``"pynq-z2"``, case-insensitive) or from the user's own TOML file.

    Parameters
    ----------
    name_or_path : str, Path or Board
        A shipped board's name, or a path to a ``.toml`` file (anything ending in ``.toml`` or
        containing a path separator is read as a file). A :class:`Board` is returned unchanged.

    Raises
    ------
    BoardError
        Unknown name (the message lists the known ones) or a malformed file.
    """
    if isinstance(name_or_path, Board):
        return name_or_path
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise BoardError(f"{path}: board file not found")
        return _read_file(path, str(path))
    boards = {b.name.lower(): b for b in _shipped()}
    board = boards.get(text.lower())
    if board is None:
        raise BoardError(
            f"unknown board {text!r}; known boards: {', '.join(sorted(boards))} "
            "(or give the path to your own board .toml file)"
        )
    return board
