"""RTL-flow estimate (da4ml shift-add logic) against yosys 0.23 numbers measured on this machine.

The yosys figures were produced by ``qnet.export.opensynth`` (``synth_xilinx -family xc7`` for
arty-a7-100t, ``synth_ice40`` for icebreaker, ``synth_ecp5`` for ulx3s) on Verilog written by
``qnet.export.to_verilog`` for the graphs rebuilt below (tests/export/hw_graphs.py). LUT counts
include the synthesis harness' output XOR tree (a few LUTs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "export"))
from hw_graphs import make_convnet, make_mlp  # noqa: E402

from qnet.errors import ConfigError  # noqa: E402
from qnet.hw.estimator import estimate  # noqa: E402

BOARDS = {"artix7": "arty-a7-100t", "ice40": "icebreaker", "ecp5": "ulx3s"}

GRAPHS = {
    "mlp 8-8-10 4b": lambda: make_mlp(4, seed=0, n_in=8, hidden=(8,)),
    "mlp 64-32-16-10 4b": lambda: make_mlp(4),
    "convnet2d (2,4) 4b": lambda: make_convnet(2, 4, seed=1, size=8, ch=(2, 4)),
    # held out of the fit: other seeds and a 2-bit MLP
    "mlp 8-8-10 4b seed 1": lambda: make_mlp(4, seed=1, n_in=8, hidden=(8,)),
    "mlp 8-8-10 4b seed 2": lambda: make_mlp(4, seed=2, n_in=8, hidden=(8,)),
    "mlp 16-16-10 2b": lambda: make_mlp(2, seed=3, n_in=16, hidden=(16,)),
}

# (graph, family, yosys LUT, yosys CARRY cells, LUT tolerance, CARRY tolerance)
YOSYS = [
    ("mlp 8-8-10 4b", "artix7", 904, 316, 0.10, 0.35),
    ("mlp 8-8-10 4b", "ice40", 1456, 909, 0.10, 0.35),
    ("mlp 8-8-10 4b", "ecp5", 518, 553, 0.10, 0.35),
    ("mlp 64-32-16-10 4b", "artix7", 19480, 5562, 0.10, 0.35),
    ("convnet2d (2,4) 4b", "artix7", 12668, 4559, 0.10, 0.35),
    ("convnet2d (2,4) 4b", "ice40", 18880, 13173, 0.10, 0.35),
    ("convnet2d (2,4) 4b", "ecp5", 6374, 7917, 0.10, 0.35),
    ("mlp 8-8-10 4b seed 1", "artix7", 940, 312, 0.20, 0.35),
    ("mlp 8-8-10 4b seed 1", "ice40", 1495, 908, 0.20, 0.35),
    ("mlp 8-8-10 4b seed 1", "ecp5", 582, 539, 0.20, 0.35),
    ("mlp 8-8-10 4b seed 2", "artix7", 914, 316, 0.20, 0.35),
    ("mlp 8-8-10 4b seed 2", "ice40", 1530, 893, 0.20, 0.35),
    ("mlp 8-8-10 4b seed 2", "ecp5", 552, 541, 0.20, 0.35),
    # the weakest case: 2-bit weights, where da4ml shares sums of inputs across outputs
    ("mlp 16-16-10 2b", "artix7", 1195, 368, 0.50, 0.70),
    ("mlp 16-16-10 2b", "ice40", 1712, 1039, 0.50, 0.70),
    ("mlp 16-16-10 2b", "ecp5", 683, 597, 0.50, 0.70),
]


@pytest.fixture(scope="module")
def graphs():
    return {name: make() for name, make in GRAPHS.items()}


@pytest.mark.parametrize(("graph", "family", "lut", "carry", "lut_tol", "carry_tol"), YOSYS)
def test_rtl_estimate_within_tolerance_of_yosys(
    graphs, graph, family, lut, carry, lut_tol, carry_tol
):
    est = estimate(graphs[graph], BOARDS[family], flow="rtl")
    assert abs(est.lut / lut - 1) <= lut_tol, (graph, family, est.lut, lut)
    assert abs(est.carry / carry - 1) <= carry_tol, (graph, family, est.carry, carry)
    assert est.dsp == 0 and est.bram_18k == 0 and est.ff == 0
    assert est.flow == "rtl" and est.latency_cycles == 0 and est.ii_cycles == 1


def test_rtl_is_much_closer_than_hls_on_the_table(graphs):
    """The hls model is off by 0.3x-3.5x on these designs; the rtl model is not."""
    for graph, family, lut, *_ in YOSYS[:7]:
        rtl = estimate(graphs[graph], BOARDS[family], flow="rtl").lut
        assert 0.9 <= rtl / lut <= 1.1


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
