"""RTL-flow estimate (da4ml shift-add logic) against open-flow runs measured on this machine.

iCE40 and ECP5: tests/data/rtl_open_flow.json, written by ``python benchmarks/rtl.py collect``
(YoWASP yosys 0.70 ``synth_ice40 -dsp`` / ``synth_ecp5``, nextpnr 0.11.1 place and route on the
icebreaker and the ulx3s where run, through :func:`qnet.export.opensynth.run_open_flow`) for the seeded
graphs of tests/export/hw_graphs.py; each row stores how to rebuild its graph. The constants of
the ice40/ecp5 models were fitted on the rows marked fitted; the held-out designs were chosen
before the fit and never used in it. Xilinx: yosys 0.23 ``synth_xilinx -family xc7`` figures
(the xilinx constants were not refitted). LUT counts include the synthesis harness' output
XOR tree (a few LUTs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "export"))
from hw_graphs import from_spec, make_convnet, make_mlp  # noqa: E402

from qnet.errors import ConfigError  # noqa: E402
from qnet.hw.estimator import estimate  # noqa: E402

DATA = json.loads((Path(__file__).parents[1] / "data" / "rtl_open_flow.json").read_text())
ROWS = DATA["rows"]
HELD_OUT = set(DATA["held_out"])
IDS = [f"{r['design']}-{r['family']}" for r in ROWS]

#: |estimate / yosys - 1| bounds, as measured (``python benchmarks/rtl.py table``): iCE40 LUT
#: 0.84-1.18, ECP5 LUT 0.56-1.31 fitted and 0.54 held out, CARRY 0.79-1.08
LUT_TOL = {"fitted": 0.45, "held-out": 0.50}
CARRY_TOL = 0.25

# Xilinx, yosys 0.23: (graph, yosys LUT, yosys CARRY cells, LUT tolerance, CARRY tolerance)
XILINX_GRAPHS = {
    "mlp 8-8-10 4b": lambda: make_mlp(4, seed=0, n_in=8, hidden=(8,)),
    "mlp 64-32-16-10 4b": lambda: make_mlp(4),
    "convnet2d (2,4) 4b": lambda: make_convnet(2, 4, seed=1, size=8, ch=(2, 4)),
    "mlp 8-8-10 4b seed 1": lambda: make_mlp(4, seed=1, n_in=8, hidden=(8,)),
    "mlp 8-8-10 4b seed 2": lambda: make_mlp(4, seed=2, n_in=8, hidden=(8,)),
    "mlp 16-16-10 2b": lambda: make_mlp(2, seed=3, n_in=16, hidden=(16,)),
}
XILINX = [
    ("mlp 8-8-10 4b", 904, 316, 0.10, 0.35),
    ("mlp 64-32-16-10 4b", 19480, 5562, 0.10, 0.35),
    ("convnet2d (2,4) 4b", 12668, 4559, 0.10, 0.35),
    ("mlp 8-8-10 4b seed 1", 940, 312, 0.20, 0.35),
    ("mlp 8-8-10 4b seed 2", 914, 316, 0.20, 0.35),
    # 2-bit weights: da4ml shares sums of inputs across outputs
    ("mlp 16-16-10 2b", 1195, 368, 0.50, 0.70),
]


@pytest.fixture(scope="module")
def graphs():
    out = {r["design"]: from_spec(r["spec"]) for r in ROWS}
    out.update({name: make() for name, make in XILINX_GRAPHS.items()})
    return out


def test_the_data_covers_both_families_mlps_and_convnets_at_2_and_8_bits():
    # 4-bit designs were queued too; none finished on the shared machine in time
    for family in ("ice40", "ecp5"):
        rows = [r for r in ROWS if r["family"] == family]
        assert {2, 8} <= {r["spec"]["bits"] for r in rows}, family
        assert {r["spec"]["kind"] for r in rows} == {"mlp", "conv"}, family
        assert {r["design"] in HELD_OUT for r in rows} == {True, False}, family
        for r in rows:
            assert r["tools"]["yosys"].startswith("Yosys 0.70"), r["tools"]
            if r["pnr"] is not None:  # placed, routed and packed
                assert r["fmax_mhz"] > 0 and r["pnr"]["LUT"] >= 0.9 * r["yosys"]["LUT"]
    # placed and routed on both boards: every design but the yosys-only 8-bit MLP
    for family in ("ice40", "ecp5"):
        assert sum(r["pnr"] is not None for r in ROWS if r["family"] == family) >= 4


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_rtl_estimate_within_tolerance_of_yosys(graphs, row):
    est = estimate(graphs[row["design"]], row["board"], flow="rtl")
    kind = "held-out" if row["design"] in HELD_OUT else "fitted"
    lut, carry = row["yosys"]["LUT"], row["yosys"]["CARRY"]
    assert abs(est.lut / lut - 1) <= LUT_TOL[kind], (kind, est.lut, lut)
    assert abs(est.carry / carry - 1) <= CARRY_TOL, (est.carry, carry)
    assert est.dsp == 0 and est.bram_18k == 0 and est.ff == 0
    assert est.flow == "rtl" and est.latency_cycles == 0 and est.ii_cycles == 1


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_fit_is_unbiased_on_its_rows(graphs, family):
    """The fitted rows' LUT ratios centre on 1 (least squares on the relative error)."""
    ratios = [
        estimate(graphs[r["design"]], r["board"], flow="rtl").lut / r["yosys"]["LUT"]
        for r in ROWS
        if r["family"] == family and r["design"] not in HELD_OUT
    ]
    assert len(ratios) >= 4
    assert abs(float(np.mean(ratios)) - 1) <= 0.10, ratios  # measured: 0.98 ice40, 0.92 ecp5


@pytest.mark.parametrize(("graph", "lut", "carry", "lut_tol", "carry_tol"), XILINX)
def test_rtl_estimate_xilinx_yosys_023(graphs, graph, lut, carry, lut_tol, carry_tol):
    est = estimate(graphs[graph], "arty-a7-100t", flow="rtl")
    assert abs(est.lut / lut - 1) <= lut_tol, (graph, est.lut, lut)
    assert abs(est.carry / carry - 1) <= carry_tol, (graph, est.carry, carry)


def test_hls_flow_is_the_default_and_unchanged(graphs):
    g = graphs["mlp 8-8-10 4b"]
    default = estimate(g, "arty-a7-100t")
    hls = estimate(g, "arty-a7-100t", flow="hls")
    assert default == hls and default.flow == "hls" and default.carry == 0


def test_pipeline_stages_add_registers_and_latency(graphs):
    g = graphs["mlp 8-8-10 4b"]
    comb = estimate(g, "arty-a7-100t", flow="rtl")
    piped = estimate(g, "arty-a7-100t", flow="rtl", pipeline_stages=3)
    assert piped.latency_cycles == 3 and piped.ii_cycles == 1
    assert piped.ff > 0 and piped.lut == comb.lut


def test_rtl_flow_errors(graphs):
    g = graphs["mlp 8-8-10 4b"]
    with pytest.raises(ConfigError, match="reuse factor must be 1"):
        estimate(g, "arty-a7-100t", flow="rtl", reuse_factor=2)
    with pytest.raises(ConfigError, match="pipeline_stages"):
        estimate(g, "arty-a7-100t", flow="rtl", pipeline_stages=-1)
    with pytest.raises(ConfigError, match="rtl flow only"):
        estimate(g, "arty-a7-100t", pipeline_stages=2)
    with pytest.raises(ConfigError, match="flow 'vhdl' is not supported"):
        estimate(g, "arty-a7-100t", flow="vhdl")
