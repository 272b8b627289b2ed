"""Open synthesis flow: yosys stat / nextpnr parsing, and a real yosys + nextpnr + icepack run."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hw_graphs import make_mlp  # noqa: E402

from qnet.errors import ToolNotFoundError  # noqa: E402
from qnet.export.opensynth import (  # noqa: E402
    parse_nextpnr_fmax,
    parse_yosys_stat,
    resources_from_cells,
    run_open_flow,
)

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


def _tools_missing(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    pytest.importorskip("da4ml", reason="da4ml is not installed (pip install -e '.[rtl]')")
    from qnet.export.verilog import write_rtl_project

    graph = make_mlp(2, seed=4, n_in=4, hidden=(3,))
    root = tmp_path_factory.mktemp("open") / "prj"
    write_rtl_project(graph, root)
    return root


@pytest.mark.rtl
@pytest.mark.skipif(
    bool(_tools_missing("yosys", "nextpnr-ice40", "icepack")),
    reason=f"open tools missing: {_tools_missing('yosys', 'nextpnr-ice40', 'icepack')}",
)
def test_ice40_flow_synthesises_places_and_packs(tiny_project):
    report = run_open_flow(tiny_project, "icebreaker", quiet=True)
    assert [name for name, _ in report.steps] == ["yosys", "nextpnr", "bitstream"]
    assert report.resources["LUT"] > 10 and report.resources["CARRY"] > 0
    # only the harness is clocked: at most one flop per port bit (yosys drops constant and
    # duplicate sign-extension bits of the outputs)
    assert 0 < report.resources["FF"] <= report.harness_ff
    assert report.fmax_mhz is not None and report.fmax_mhz > 5
    assert Path(report.outputs["bitstream"]).stat().st_size > 1000
    again = run_open_flow(tiny_project, "icebreaker", quiet=True)  # resumed from markers
    assert all(seconds == 0.0 for _, seconds in again.steps)
    assert again.resources == report.resources and again.fmax_mhz == report.fmax_mhz


@pytest.mark.rtl
@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys is not installed")
def test_xilinx_synthesis_counts_luts_and_carries(tiny_project):
    report = run_open_flow(tiny_project, "arty-a7-100t", quiet=True, force=True)
    assert report.family == "artix7" and report.fmax_mhz is None
    assert report.resources["LUT"] > 5 and report.resources["CARRY"] > 0
    assert report.resources["DSP"] == 0  # da4ml builds shift-add logic, no multipliers


def test_missing_yosys_names_the_install_command(tiny_project, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolNotFoundError, match="apt-get install yosys"):
        run_open_flow(tiny_project, "icebreaker", quiet=True)
