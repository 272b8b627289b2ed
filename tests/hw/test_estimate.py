"""Estimator: rules on tiny graphs, and calibration against published synthesis results.

Published figures: /work/shared/reference/published-synthesis.md (J1, J2, C1, T1).
The tolerances below are the ones this model reaches; see hw/estimator.py for its weak spots.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from qnet.errors import ConfigError
from qnet.hw.estimator import estimate
from qnet.hw.fixed import FixedType
from qnet.hw.graph import Dense, HwGraph, Input, Layer, ReLU
from qnet.hw.options import valid_reuse_factors

sys.path.insert(0, str(Path(__file__).parent))
from _published import jet_mlp, svhn_cnn, tfc_w1a1  # noqa: E402

T8 = FixedType(8, 4)
T16 = FixedType(16, 6)


def _dense_graph(weight: np.ndarray, in_t: FixedType = T16, w_t: FixedType = T16) -> HwGraph:
    n_out, n_in = weight.shape
    return HwGraph(
        (
            Input("x", (), (n_in,), in_t),
            Dense(
                "fc",
                ("x",),
                (n_out,),
                T16,
                weight=weight,
                weight_type=w_t,
                acc_type=FixedType(32, 12),
            ),
        )
    )


def _rel(est: float, pub: float) -> float:
    return abs(est - pub) / pub


# ------------------------------------------------------------------ mapping rules
def test_zero_and_power_of_two_weights_need_no_multiplier() -> None:
    w = np.array([[0, 1, -2, 4, 0, -64, 32, 0]], dtype=np.int64)
    e = estimate(_dense_graph(w), "zcu104")
    assert e.dsp == 0 and e.dsp_mults == 0 and e.lut_mults == 0
    assert e.free_mults == 8
    assert e.mults == 5  # nonzero products only


def test_wide_constants_use_dsps_narrow_ones_luts() -> None:
    wide = np.array([[301, -457, 1001]], dtype=np.int64)  # odd parts of 9-10 bits
    e = estimate(_dense_graph(wide), "zcu104")
    assert (e.dsp, e.dsp_mults, e.lut_mults) == (3, 3, 0)
    narrow = np.array([[3, -5, 7]], dtype=np.int64)  # effective width 3-4 bits
    e = estimate(_dense_graph(narrow), "zcu104")
    assert (e.dsp, e.lut_mults) == (0, 3)
    # 4-bit activations: every product is narrow, whatever the weight
    e = estimate(_dense_graph(wide, in_t=FixedType(4, 2)), "zcu104")
    assert (e.dsp, e.lut_mults) == (0, 3)


def test_operands_wider_than_the_dsp_take_several() -> None:
    wide_t = FixedType(32, 8)
    w = np.array([[(1 << 30) - 1]], dtype=np.int64)  # 30-bit odd constant
    e = estimate(_dense_graph(w, in_t=FixedType(32, 8), w_t=wide_t), "zcu104")
    # DSP48E2 27x18: ceil(32/26) * ceil(31/17) = 2 * 2
    assert e.dsp == 4


def test_reuse_factor_divides_multipliers_and_sets_ii() -> None:
    rng = np.random.default_rng(1)
    w = (2 * rng.integers(100, 450, size=(8, 16)) + 1) * rng.choice([-1, 1], size=(8, 16))
    e1 = estimate(_dense_graph(w), "zcu104", reuse_factor=1)
    e4 = estimate(_dense_graph(w), "zcu104", reuse_factor=4)
    assert e1.dsp == 128 and e4.dsp == 32
    assert (e1.ii_cycles, e4.ii_cycles) == (1, 4)
    assert e4.throughput_per_s == pytest.approx(e4.clock_mhz * 1e6 / 4)


def test_invalid_reuse_factor_names_layer_and_valid_values() -> None:
    w = np.ones((8, 16), dtype=np.int64) * 3
    with pytest.raises(ConfigError, match=r"layer 'fc'.*hls4ml accepts: 1, 2, 4, 8, 16"):
        estimate(_dense_graph(w), "zcu104", reuse_factor=3)
    assert 3 not in valid_reuse_factors(16, 8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"io_type": "io_serial"}, "io_type"),
        ({"strategy": "fast"}, "strategy"),
        ({"reuse_factor": 0}, "reuse factor"),
        ({"clock_mhz": -5.0}, "clock"),
        ({"reuse_factor": {"nope": 2}}, "unknown layer"),
    ],
)
def test_bad_options_raise_config_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        estimate(_dense_graph(np.ones((2, 2), np.int64)), "pynq-z2", **kwargs)


def test_unknown_layer_kind_is_a_row_and_a_warning() -> None:
    @dataclass(frozen=True, eq=False)
    class Mystery(Layer):
        kind: ClassVar[str] = "mystery"

    g = HwGraph(
        (Input("x", (), (4,), T8), Mystery("m", ("x",), (4,), T8), ReLU("r", ("m",), (4,), T8))
    )
    e = estimate(g, "pynq-z2")
    row = next(r for r in e.layers if r.name == "m")
    assert "no estimate for layer 'm' of kind 'mystery'" in row.note
    assert any("'mystery'" in w for w in e.warnings)


def test_utilisation_and_overflow_warning() -> None:
    e = estimate(jet_mlp(), "pynq-z2", clock_mhz=200)  # 3.7k DSPs on a 220-DSP device
    assert e.utilisation["DSP"] == pytest.approx(100 * e.dsp / 220)
    assert not e.fits
    assert any(w.startswith("DSP:") and "pynq-z2" in w for w in e.warnings)
    ok = estimate(jet_mlp(), "alveo-u250", clock_mhz=200)
    assert ok.fits and not ok.warnings


def test_to_dict_is_json_and_fast() -> None:
    g = svhn_cnn()
    t0 = time.perf_counter()
    e = estimate(g, "alveo-u250", io_type="io_stream")
    assert time.perf_counter() - t0 < 1.0
    d = json.loads(json.dumps(e.to_dict()))
    assert d["lut"] == e.lut and len(d["layers"]) == len(g.layers)
    assert sum(r["dsp"] for r in d["layers"]) == d["dsp"]


def test_lut4_family_costs_more_luts_for_logic() -> None:
    w = np.array([[3, 5, 7, 9]], dtype=np.int64)
    g = _dense_graph(w, in_t=FixedType(4, 2))
    assert estimate(g, "ulx3s").lut > estimate(g, "pynq-z2").lut


# ------------------------------------------------------------------ published designs
def test_j1_jet_mlp_reuse1() -> None:
    """hls4ml jet tagging, ap_fixed<16,6>, R=1, Latency, 5 ns (Vivado HLS 2019.2 csynth)."""
    e = estimate(jet_mlp(), "zcu102", clock_mhz=200.0)
    assert _rel(e.lut, 88_289) <= 0.15
    assert _rel(e.ff, 49_449) <= 0.15
    assert _rel(e.dsp, 3_915) <= 0.10
    assert abs(e.latency_cycles - 13) <= 2  # published includes the softmax
    assert e.ii_cycles == 1


def test_j2_jet_mlp_reuse2() -> None:
    e = estimate(jet_mlp(), "zcu102", clock_mhz=200.0, reuse_factor=2)
    assert _rel(e.lut, 127_736) <= 0.15
    assert _rel(e.ff, 51_194) <= 0.15
    assert _rel(e.dsp, 2_133) <= 0.02
    assert abs(e.latency_cycles - 18) <= 2
    assert e.ii_cycles == 2


def test_c1_svhn_cnn_stream() -> None:
    """hls4ml SVHN CNN, 50 % pruned, io_stream, R=1 (HLS figures; BN not modelled)."""
    e = estimate(svhn_cnn(), "alveo-u250", clock_mhz=200.0, io_type="io_stream")
    assert _rel(e.lut, 245_466) <= 0.40  # model is weakest here (see module docstring)
    assert _rel(e.ff, 52_549) <= 0.60
    assert _rel(e.dsp, 5_414) <= 0.20
    assert _rel(e.bram_18k, 100) <= 0.45
    assert _rel(e.latency_cycles, 1_044) <= 0.05
    assert _rel(e.ii_cycles, 1_028) <= 0.02


def test_t1_finn_tfc_folding() -> None:
    """FINN TFC w1a1: folding (PE, SIMD) gives 64 cycles per frame; hls4ml reuse factors
    with the same multiplier count per layer (784x64 layer: 56, hls4ml refuses 64)."""
    e = estimate(
        tfc_w1a1(),
        "pynq-z1",
        reuse_factor={"default": 64, "fc0": 56},
        strategy="Resource",
        io_type="io_stream",
    )
    assert e.ii_cycles == 64
    assert e.dsp == 0  # 1-bit x 2-bit products all go to LUTs
    # measured 958,413 frames/s on the board (host + DMA included): the estimate bounds it
    assert 958_413 <= e.throughput_per_s <= 2 * 958_413
