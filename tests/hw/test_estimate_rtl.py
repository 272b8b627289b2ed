"""RTL-flow estimate (da4ml shift-add logic) against open-flow runs measured on this machine.

tests/data/rtl_open_flow.json holds the counts, written by ``python benchmarks/rtl.py collect``
through :func:`qnet.export.opensynth.run_open_flow` (YoWASP yosys 0.70 ``synth_ice40 -dsp`` /
``synth_ecp5`` / ``synth_xilinx -family xc7``; nextpnr 0.11.1 place and route on the
icebreaker and the ulx3s) for the seeded graphs of tests/export/hw_graphs.py; each row stores
how to rebuild its graph. The constants of qnet's rtl model were fitted on the rows marked
fitted; the held-out designs (``held_out`` in the file) were chosen before the fit and never
used in it. The expected values are the measured counts; the tolerances are the measured error
bands of ``python benchmarks/rtl.py table`` (rounded up), not values taken from the model.
LUT counts include the synthesis harness (a shift register in, an XOR tree out).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "export"))
from hw_graphs import from_spec, in_type, make_mlp  # noqa: E402

from qnet.errors import ConfigError  # noqa: E402
from qnet.hw.cost_rtl import _rtl_mac_bits, value_bounds  # noqa: E402
from qnet.hw.estimator import estimate  # noqa: E402
from qnet.hw.fixed import FixedType, Overflow, Rounding  # noqa: E402
from qnet.hw.graph import Dense, HwGraph, Input, ReLU  # noqa: E402

DATA = json.loads((Path(__file__).parents[1] / "data" / "rtl_open_flow.json").read_text())
ROWS = DATA["rows"]
HELD_OUT = set(DATA["held_out"])
IDS = [f"{r['design']}-{r['family']}" for r in ROWS]


def _set(row: dict) -> str:
    return "held-out" if row["design"] in HELD_OUT else "fitted"


#: |estimate / yosys - 1| bounds per family and set: the measured bands of
#: ``python benchmarks/rtl.py table`` (module docstring of qnet.hw.cost_rtl), rounded up
LUT_TOL = {
    ("ice40", "fitted"): 0.45,  # measured 0.57-1.43
    ("ice40", "held-out"): 0.40,  # 0.63-1.18
    ("ecp5", "fitted"): 0.95,  # 0.57-1.92 (conv1d (2,2) fc6 4b: 1.92)
    ("ecp5", "held-out"): 0.60,  # 0.41-0.93
    ("xilinx", "fitted"): 0.55,  # 0.64-1.51
    ("xilinx", "held-out"): 0.35,  # 0.69-1.00
}
CARRY_TOL = {"fitted": 0.55, "held-out": 0.85}  # 0.61-1.52 fitted, 0.40-1.83 held out


@pytest.fixture(scope="module")
def graphs():
    return {r["design"]: from_spec(r["spec"]) for r in ROWS}


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_the_data_covers_mlps_and_convnets_at_2_4_and_8_bits(family):
    rows = [r for r in ROWS if r["family"] == family]
    for kind in ("mlp", "conv"):
        assert {r["spec"]["bits"] for r in rows if r["spec"]["kind"] == kind} >= {2, 4, 8}, kind
        assert {_set(r) for r in rows if r["spec"]["kind"] == kind} == {"fitted", "held-out"}
    assert {_set(r) for r in rows if r["spec"].get("bits") == 8} == {"fitted", "held-out"}
    assert any(r["spec"]["kind"] == "file" for r in rows)  # a trained network, held out
    for r in rows:
        assert r["tools"]["yosys"].startswith("Yosys 0.70"), r["tools"]
        if r["pnr"] is not None:  # placed, routed and packed
            assert r["fmax_mhz"] > 0 and r["pnr"]["LUT"] >= 0.9 * r["yosys"]["LUT"]
    assert sum(r["pnr"] is not None for r in rows) >= 10


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_rtl_estimate_within_measured_error_of_yosys(graphs, row):
    est = estimate(graphs[row["design"]], row["board"], flow="rtl")
    kind = _set(row)
    lut, carry = row["yosys"]["LUT"], row["yosys"]["CARRY"]
    assert abs(est.lut / lut - 1) <= LUT_TOL[row["family"], kind], (kind, est.lut, lut)
    assert abs(est.carry / carry - 1) <= CARRY_TOL[kind], (kind, est.carry, carry)
    assert est.dsp == 0 and est.bram_18k == 0 and est.ff == 0
    assert est.flow == "rtl" and est.latency_cycles == 0 and est.ii_cycles == 1


@pytest.mark.parametrize("family", sorted({r["family"] for r in ROWS}))
def test_fit_is_unbiased_on_its_rows(graphs, family):
    """The fitted rows' LUT ratios centre near 1 (least squares on the relative error, which
    an outlier pulls: measured means 0.93 iCE40, 0.87 ECP5, 0.94 Xilinx)."""
    ratios = [
        estimate(graphs[r["design"]], r["board"], flow="rtl").lut / r["yosys"]["LUT"]
        for r in ROWS
        if r["family"] == family and _set(r) == "fitted"
    ]
    assert len(ratios) >= 6
    assert abs(float(np.mean(ratios)) - 1) <= 0.15, ratios


def _relu_net(w: list[list[int]], bias: list[int]) -> HwGraph:
    """2 inputs in [0, 1) -> dense (integer weights, bias in lsb of the products) -> ReLU."""
    x_t = in_type(8)  # ap_ufixed<8,0>: mantissas 0..255
    w_t = FixedType(4, 4, signed=True)
    acc = FixedType(16, 8, signed=True)
    out = FixedType(8, 4, signed=True, rounding=Rounding.TRN, overflow=Overflow.SAT)
    act = FixedType(8, 4, signed=False, rounding=Rounding.TRN, overflow=Overflow.SAT)
    n = len(w)
    return HwGraph(
        (
            Input("inp", (), (2,), x_t),
            Dense(
                "fc",
                ("inp",),
                (n,),
                out,
                weight=np.array(w),
                weight_type=w_t,
                bias=np.array(bias),
                bias_type=FixedType(16, 8, signed=True),
                acc_type=acc,
            ),
            ReLU("relu", ("fc",), (n,), act),
        ),
        {},
    )


def test_an_output_its_relu_always_zeroes_costs_no_adders():
    # y0 = x0 + x1 >= 0; y1 = -x0 - x1 - 1/256 < 0 for every input: relu(y1) == 0
    live = _relu_net([[1, 1]], [0])
    dead = _relu_net([[1, 1], [-1, -1]], [0, -1])
    lo, hi = value_bounds(dead)["relu"]
    assert lo.tolist() == [0, 0] and hi.tolist() == [2 * 255 // 16, 0]  # 4 frac bits, truncated
    assert _rtl_mac_bits(dead["fc"], dead)[0] == 1  # one adder: x0 + x1
    assert _rtl_mac_bits(dead["fc"], dead) == _rtl_mac_bits(live["fc"], live)


def test_a_constant_input_is_folded():
    # x1 = relu(-x0 - 1/256) == 0 always: the next layer's column 1 costs nothing
    g = _relu_net([[1, 0], [-1, 0]], [0, -1])
    nxt = Dense(
        "fc2",
        ("relu",),
        (1,),
        g["fc"].out_type,
        weight=np.array([[3, 5]]),
        weight_type=FixedType(4, 4, signed=True),
        bias=None,
        bias_type=None,
        acc_type=FixedType(16, 8, signed=True),
    )
    g2 = HwGraph((*g.layers, nxt), {})
    adders, prod_bits, sum_bits = _rtl_mac_bits(nxt, g2)
    assert adders == 1 and sum_bits == 0  # 3 * x0 = x0 + 2 x0: one product adder, no sum


def test_hls_flow_is_the_default_and_unchanged():
    g = make_mlp(4, seed=0, n_in=8, hidden=(8,))
    default = estimate(g, "arty-a7-100t")
    hls = estimate(g, "arty-a7-100t", flow="hls")
    assert default == hls and default.flow == "hls" and default.carry == 0


def test_pipeline_stages_add_registers_and_latency():
    g = make_mlp(4, seed=0, n_in=8, hidden=(8,))
    comb = estimate(g, "arty-a7-100t", flow="rtl")
    piped = estimate(g, "arty-a7-100t", flow="rtl", pipeline_stages=3)
    assert piped.latency_cycles == 3 and piped.ii_cycles == 1
    assert piped.ff > 0 and piped.lut == comb.lut


def test_rtl_flow_errors():
    g = make_mlp(4, seed=0, n_in=8, hidden=(8,))
    with pytest.raises(ConfigError, match="reuse factor must be 1"):
        estimate(g, "arty-a7-100t", flow="rtl", reuse_factor=2)
    with pytest.raises(ConfigError, match="pipeline_stages"):
        estimate(g, "arty-a7-100t", flow="rtl", pipeline_stages=-1)
    with pytest.raises(ConfigError, match="rtl flow only"):
        estimate(g, "arty-a7-100t", pipeline_stages=2)
    with pytest.raises(ConfigError, match="flow 'vhdl' is not supported"):
        estimate(g, "arty-a7-100t", flow="vhdl")
