from __future__ import annotations

from pathlib import Path

import pytest

from qnet.errors import BoardError
from qnet.hw.boards import list_boards, load_board

GOOD = """\
name = "my-board"
vendor = "Me"
family = "zynq7000"
part = "xc7z010clg400-1"
default_clock_mhz = 100
hls4ml_backend = "Vivado"
interface = "axi-lite"

[resources]
lut = 17600
ff = 35200
dsp = 80
bram_18k = 120
uram = 0
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "b.toml"
    p.write_text(text)
    return p


def test_shipped_boards_cover_the_required_set() -> None:
    names = {b.name for b in list_boards()}
    required = {
        "pynq-z1",
        "pynq-z2",
        "zc706",
        "zcu102",
        "zcu104",
        "ultra96-v2",
        "kv260",
        "arty-a7-100t",
        "alveo-u50",
        "alveo-u200",
        "alveo-u250",
        "alveo-u280",
        "alveo-u55c",
        "icebreaker",
        "ulx3s",
    }
    assert required <= names


def test_shipped_board_values_and_source_comments() -> None:
    z2 = load_board("PYNQ-Z2")
    assert z2.part == "xc7z020clg400-1" and z2.resources.dsp == 220
    assert z2.hls4ml_backend == "VivadoAccelerator" and z2.hls4ml_board == "pynq-z2"
    ice = load_board("icebreaker")
    assert ice.hls4ml_backend == "none" and ice.family_info.lut_inputs == 4
    assert ice.open_flow is not None and ice.open_flow.yosys_synth == "synth_ice40"
    boards_dir = Path(__file__).parents[2] / "boards"
    for f in boards_dir.glob("*.toml"):
        assert "Source:" in f.read_text(), f"{f.name} names no data-sheet source"


def test_user_board_file(tmp_path: Path) -> None:
    b = load_board(_write(tmp_path, GOOD))
    assert b.name == "my-board" and b.resources.lut == 17600 and b.default_clock_mhz == 100.0
    assert load_board(str(tmp_path / "b.toml")) == b


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: "colour = 'red'\n" + t, r"b\.toml.*unknown field 'colour'"),
        (lambda t: t.replace('part = "xc7z010clg400-1"\n', ""), r"b\.toml.*missing.*'part'"),
        (lambda t: t.replace("dsp = 80", 'dsp = "80"'), r"b\.toml.*'resources\.dsp' must be a int"),
        (lambda t: t.replace("lut = 17600", "lut = -1"), r"b\.toml.*'resources\.lut' must be >= 0"),
        (lambda t: t.replace("uram = 0\n", ""), r"missing required field 'resources\.uram'"),
        (lambda t: t.replace("uram = 0", "uram = 0\nsram = 3"), r"unknown field 'resources\.sram'"),
        (lambda t: t.replace('"zynq7000"', '"stratix"'), r"'family' is 'stratix'"),
        (lambda t: t.replace('"Vivado"', '"Quartus"'), r"'hls4ml_backend'.*'none'"),
        (lambda t: t.replace('"axi-lite"', '"pcie"'), r"'interface'"),
        (lambda t: t.replace("= 100\n", "= 0\n"), r"default_clock_mhz"),
        (lambda t: t.replace('"Vivado"', '"VivadoAccelerator"'), r"'hls4ml_board' is required"),
        (lambda t: t.replace("dsp = 80", "dsp = true"), r"'resources\.dsp' must be a int"),
        (lambda t: t + "[open_flow]\nnextpnr = 'x'\n", r"missing.*'open_flow\.yosys_synth'"),
        (lambda t: t.replace("name =", "name = ="), r"not valid TOML"),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path: Path, edit, match: str) -> None:
    with pytest.raises(BoardError, match=match):
        load_board(_write(tmp_path, edit(GOOD)))


def test_open_tool_family_refuses_vendor_backend(tmp_path: Path) -> None:
    text = GOOD.replace('"zynq7000"', '"ice40"')
    with pytest.raises(BoardError, match="use hls4ml_backend = 'none'"):
        load_board(_write(tmp_path, text))


def test_unknown_name_lists_boards() -> None:
    with pytest.raises(BoardError, match=r"unknown board 'zcu999'.*pynq-z2"):
        load_board("zcu999")
    with pytest.raises(BoardError, match="not found"):
        load_board("/nonexistent/board.toml")


def test_duplicate_names_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import qnet.hw.boards as boards_mod

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.toml").write_text(GOOD)
    (pkg / "b.toml").write_text(GOOD)
    monkeypatch.setattr(boards_mod.importlib.resources, "files", lambda _name: pkg)
    boards_mod._shipped.cache_clear()
    try:
        with pytest.raises(BoardError, match=r"boards/b\.toml.*'my-board' duplicates.*a\.toml"):
            list_boards()
    finally:
        monkeypatch.undo()
        boards_mod._shipped.cache_clear()
