"""Float (non-power-of-two) scales: Brevitas' default quantisers, as users write models.

The hardware is integer accumulators plus thresholds computed from the exact real-valued math;
Brevitas computes in float32. Oracles here come from Brevitas' own modules and from Python
``Fraction`` arithmetic, never from the code under test. Every Brevitas difference must be
proven a float32 rounding case, and a tampered graph must fail the proof.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from fractions import Fraction

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8WeightPerChannelFloat
    from torch import nn

import qnet
from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import HwGraph
from qnet.hw.host import HostOp, run_host
from qnet.hw.simulator import simulate, simulate_int
from qnet.lowering.requant import Affine, eval_thresholds, exact_requant, search_thresholds


def _calibrate(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    """A few training-mode batches set the runtime-statistics scales, as training would."""
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(64, *shape))
    return model.eval()


def defaults_mlp() -> nn.Module:
    """The issue's model: Brevitas defaults everywhere (float scales, float bias)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        qnn.QuantIdentity(return_quant_tensor=True),
        qnn.QuantLinear(16, 8, bias=True),
        qnn.QuantReLU(return_quant_tensor=True),
        qnn.QuantLinear(8, 4),
    )
    return _calibrate(model, (16,))


def per_channel_cnn(batchnorm: bool) -> nn.Module:
    torch.manual_seed(1)
    layers: list[nn.Module] = [
        qnn.QuantIdentity(return_quant_tensor=True),
        qnn.QuantConv2d(1, 8, 3, weight_quant=Int8WeightPerChannelFloat, bias=True),
    ]
    if batchnorm:
        layers.append(nn.BatchNorm2d(8))
    layers += [
        qnn.QuantReLU(return_quant_tensor=True),
        nn.MaxPool2d(2),
        qnn.QuantConv2d(8, 16, 3, weight_quant=Int8WeightPerChannelFloat, bias=True),
    ]
    if batchnorm:
        layers.append(nn.BatchNorm2d(16))
    layers += [
        qnn.QuantReLU(return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(16 * 3 * 3, 10, bias=True),
    ]
    model = nn.Sequential(*layers)
    model = _calibrate(model, (1, 12, 12), seed=1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


def _inputs(shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


# ------------------------------------------------------------------------------ lowering
def test_defaults_mlp_lowers_to_integer_hardware_and_host_float_stages() -> None:
    model = defaults_mlp()
    g = qnet.lower(model, torch.zeros(1, 16))
    assert [layer.kind for layer in g.layers] == ["input", "dense", "multithreshold", "dense"]
    # the host divides by the input quantiser's scale (as Brevitas' IntQuant does), in float32
    assert [op.op for op in g.pre] == ["div"]
    assert float(g.pre[0].const.reshape(-1)[0]) == float(model[0].act_quant.scale())
    # integer weights are Brevitas' own integers
    np.testing.assert_array_equal(g["1"].weight, model[1].quant_weight().int().numpy())
    np.testing.assert_array_equal(g["3"].weight, model[3].quant_weight().int().numpy())
    # the last layer's float scale and float bias: applied by the host to the integers
    assert g.post[0].op == "affine"
    s_exact = float(model[2].act_quant.scale()) * float(model[3].quant_weight().scale)
    np.testing.assert_array_equal(g.post[0].const, np.full(4, s_exact))
    np.testing.assert_array_equal(g.post[0].const2, model[3].bias.detach().numpy())


def test_requantisation_equals_exact_rational_math() -> None:
    """MultiThreshold output == clamp(round_half_even((acc * s_w[c] * s_x + b[c]) / s_y)),
    computed with Fractions from Brevitas' own scales and the traced integer accumulator."""
    model = per_channel_cnn(batchnorm=False)
    g = qnet.lower(model, torch.zeros(1, 1, 12, 12))
    x = _inputs((1, 12, 12), 40)
    trace = simulate_int(g, x, trace=True)
    acc, mt = g.layers[1], g.layers[2]
    assert (acc.kind, mt.kind) == ("conv", "multithreshold")
    s_x = Fraction(float(model[0].act_quant.scale()))
    s_w = model[1].quant_weight().scale.detach().reshape(-1).double().numpy()
    bias = model[1].bias.detach().double().numpy()
    s_y = Fraction(float(model[2].act_quant.scale()))
    a = trace[acc.name]
    want = np.empty_like(a)
    for idx in np.ndindex(*a.shape):
        c = idx[1]
        v = (int(a[idx]) * s_x * Fraction(float(s_w[c])) + Fraction(float(bias[c]))) / s_y
        fl = v.numerator // v.denominator
        rem = v - fl
        y = fl + 1 if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2) else fl
        want[idx] = min(max(y, 0), 255)
    np.testing.assert_array_equal(trace[mt.name], want)


@pytest.mark.parametrize("rounding", [Rounding.RND_CONV, Rounding.TRN, Rounding.TRN_ZERO])
def test_exact_requant_thresholds_against_brute_force(rounding: Rounding) -> None:
    rng = np.random.default_rng(3)
    channels = 5
    # scales chosen so that v / s_y hits exact half-way ties (0.25 * odd / 0.5)
    scale = np.array([0.25, 0.1, 0.0173, 1.5, 0.25])
    offset = np.array([0.0, -0.3, 0.7, 0.125, -0.125])
    out = FixedType(4, 4, True, rounding, Overflow.SAT)
    q = exact_requant(Affine(1, scale, offset, channels), 0.5, out, relu=False)
    a = np.repeat(np.arange(-300, 301, dtype=np.int64)[:, None], channels, axis=1)
    got = q(a)
    for c in range(channels):
        for k in rng.choice(a.shape[0], 120, replace=False):
            v = Fraction(int(a[k, c]), 2) * Fraction(float(scale[c])) + Fraction(float(offset[c]))
            v /= Fraction(1, 2)
            fl = v.numerator // v.denominator
            if rounding == Rounding.RND_CONV:
                rem = v - fl
                y = fl + 1 if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2) else fl
            elif rounding == Rounding.TRN:
                y = fl
            else:
                y = fl + 1 if (v < 0 and v != fl) else fl
            assert got[k, c] == min(max(y, -8), 7), (c, int(a[k, c]))
    thr, inc, base, _ = search_thresholds(q, -300, 300, channels)
    np.testing.assert_array_equal(eval_thresholds(thr, inc, base, a), got)


# ----------------------------------------------------------------------------- verify
def test_defaults_mlp_brevitas_differences_are_proven() -> None:
    model = defaults_mlp()
    x = _inputs((16,), 400)
    report = qnet.verify(model, x, csim=False)
    bs = report.pair("brevitas", "simulator")
    # Brevitas' float32 logits differ in the last bits: each one proven within the bound
    assert bs.elements_equal < bs.elements
    assert bs.proof is not None and bs.proof.ok, bs.proof
    assert bs.proof.samples == bs.samples - bs.samples_equal
    assert 0 < bs.proof.max_output_ratio <= 1.0
    assert report.all_exact
    assert "float32 proof" in report.table()


def test_per_channel_cnn_requantisation_boundary_cases_are_proven() -> None:
    model = per_channel_cnn(batchnorm=False)
    x = _inputs((1, 12, 12), 3000, seed=5)
    report = qnet.verify(model, x, csim=False)
    proof = report.pair("brevitas", "simulator").proof
    assert proof is not None and proof.ok, proof
    # with this seed Brevitas' float32 sums cross a rounding boundary of a requantisation
    assert proof.requant_elements > 0
    assert 0.0 <= proof.max_requant_ratio <= 1.0
    assert report.all_exact


def test_batchnorm_cnn_simulator_equals_csim() -> None:
    model = per_channel_cnn(batchnorm=True)
    x = _inputs((1, 12, 12), 200, seed=2)
    report = qnet.verify(model, x, csim=True)
    assert report.pair("simulator", "csim").exact
    proof = report.pair("brevitas", "simulator").proof
    assert proof is not None and proof.ok, proof
    assert report.all_exact


def _replace_layer(g: HwGraph, name: str, **changes: object) -> HwGraph:
    layers = tuple(dataclasses.replace(la, **changes) if la.name == name else la for la in g)
    return HwGraph(layers, dict(g.meta), g.pre, g.post)


def test_tampered_hardware_is_not_explained() -> None:
    """The proof must fail on differences that are not float32 rounding."""
    model = per_channel_cnn(batchnorm=False)
    g = qnet.lower(model, torch.zeros(1, 1, 12, 12))
    x = _inputs((1, 12, 12), 300, seed=7)
    # 1. a wrong float bias on the host: outputs off by far more than the bound
    aff = g.post[0]
    bad_offset = aff.const2.copy()
    bad_offset[0] += 1e-3
    bad = HwGraph(g.layers, dict(g.meta), g.pre, (HostOp("affine", aff.const, bad_offset),))
    report = qnet.verify(model, x, csim=False, graph=bad)
    proof = report.pair("brevitas", "simulator").proof
    assert proof is not None and not proof.ok and not report.all_exact
    assert any("outside the float32 error bound" in u for u in proof.unexplained)
    assert "UNEXPLAINED" in report.table()
    # 2. thresholds of one channel moved by a few accumulator steps
    mt = g.layers[2]
    thr = mt.thresholds.copy()
    thr[0] += 3
    report = qnet.verify(model, x, csim=False, graph=_replace_layer(g, mt.name, thresholds=thr))
    proof = report.pair("brevitas", "simulator").proof
    assert proof is not None and not proof.ok and not report.all_exact
    assert any(f"requantisation {mt.name!r}" in u for u in proof.unexplained)


def test_affine_host_op_round_trips_and_the_generated_host_py_agrees(tmp_path) -> None:  # noqa: ANN001
    from qnet.export.host import write_host_files

    model = defaults_mlp()
    g = qnet.lower(model, torch.zeros(1, 16))
    again = HwGraph.load(g.save(tmp_path / "g.json"))
    np.testing.assert_array_equal(again.post[0].const, g.post[0].const)
    assert again.post[0].const.dtype == np.float64
    write_host_files(g, tmp_path)
    spec = importlib.util.spec_from_file_location("host_gen", tmp_path / "host.py")
    assert spec is not None and spec.loader is not None
    host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host)
    y = np.random.default_rng(0).integers(-(2**18), 2**18, size=(50, 4)).astype(np.float64)
    np.testing.assert_array_equal(host.postprocess(y), run_host(g.post, y))
    x = _inputs((16,), 50)
    np.testing.assert_array_equal(host.preprocess(x), run_host(g.pre, x))
    np.testing.assert_array_equal(g.postprocess(y), run_host(g.post, y).astype(np.float64))


def small_bn_cnn() -> nn.Module:
    """Per-channel float weights, BatchNorm, 4-bit float-scale activations (15 thresholds per
    value: an 8-bit requantisation is 255 comparators per value in RTL, which makes Verilator
    take 13 GB on per_channel_cnn)."""
    torch.manual_seed(2)
    model = nn.Sequential(
        qnn.QuantIdentity(return_quant_tensor=True),
        qnn.QuantConv2d(1, 4, 3, weight_quant=Int8WeightPerChannelFloat, bias=True),
        nn.BatchNorm2d(4),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantConv2d(4, 4, 3, weight_quant=Int8WeightPerChannelFloat, bias=True),
        nn.BatchNorm2d(4),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(4 * 2 * 2, 3, bias=True),
    )
    return _calibrate(model, (1, 6, 6), seed=2)


@pytest.mark.slow
def test_float_scale_models_rtl_equals_simulator() -> None:
    for model, shape in ((defaults_mlp(), (16,)), (small_bn_cnn(), (1, 6, 6))):
        report = qnet.verify(model, _inputs(shape, 100, seed=4), csim=False, rtl=True)
        assert report.pair("simulator", "rtl").exact
        assert report.all_exact


def test_simulate_output_is_brevitas_within_bound_on_defaults() -> None:
    """The simulator's logits are Brevitas' up to float32 rounding (a sanity bound, 1e-5)."""
    model = defaults_mlp()
    x = _inputs((16,), 100)
    g = qnet.lower(model, torch.as_tensor(x[:1]))
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy()
    got = simulate(g, x)
    assert np.abs(got - want).max() < 1e-5


USER_FILE = """
import torch
from brevitas import nn as qnn
from torch import nn


def build():
    torch.manual_seed(0)
    model = nn.Sequential(
        qnn.QuantIdentity(return_quant_tensor=True),
        qnn.QuantLinear(16, 8, bias=True),
        qnn.QuantReLU(return_quant_tensor=True),
        qnn.QuantLinear(8, 4),
    )
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(64, 16))
    return model.eval(), torch.zeros(1, 16)
"""


def test_qnet_verify_cli_on_brevitas_defaults_file(tmp_path) -> None:  # noqa: ANN001
    """The user's path: a model file with Brevitas' defaults, `qnet verify` with C simulation."""
    import os
    import subprocess
    import sys

    path = tmp_path / "defaults.py"
    path.write_text(USER_FILE)
    cmd = [sys.executable, "-c", "from qnet.cli import main; main()"]
    env = dict(os.environ, COLUMNS="200")
    out = subprocess.run(
        [*cmd, "verify", f"{path}:build", "--n", "200"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("simulator vs csim")]
    assert rows and rows[0].split()[-1] == "EXACT", out.stdout
    assert "float32 proof" in out.stdout
    assert "ALL EXACT" in out.stdout and "UNEXPLAINED" not in out.stdout


def test_boundary_case_behind_a_max_pool_is_proven(monkeypatch) -> None:  # noqa: ANN001
    """conv -> MaxPool -> QuantReLU: the bound is carried through the pool (max of values
    each within E_j of r_j is within max E_j of max r_j); with this seed one such case."""
    import qnet.float_proof as fp

    torch.manual_seed(1)
    model = nn.Sequential(
        qnn.QuantIdentity(return_quant_tensor=True),
        qnn.QuantConv2d(1, 8, 3, weight_quant=Int8WeightPerChannelFloat, bias=True),
        qnn.QuantReLU(return_quant_tensor=True),
        qnn.QuantConv2d(8, 16, 3, weight_quant=Int8WeightPerChannelFloat, bias=True),
        nn.MaxPool2d(2),
        qnn.QuantReLU(return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(16 * 4 * 4, 3),
    )
    model = _calibrate(model, (1, 12, 12), seed=1)
    seen: list[tuple[str, object]] = []
    original = fp._explain_requant

    def spy(graph, e, *args):  # noqa: ANN001, ANN002, ANN202
        verdict = original(graph, e, *args)
        seen.append((graph[e["input"]].kind, verdict))
        return verdict

    monkeypatch.setattr(fp, "_explain_requant", spy)
    x = np.random.default_rng(5).standard_normal((3000, 1, 12, 12)).astype(np.float32)
    report = qnet.verify(model, x, csim=False)
    assert report.all_exact
    pooled = [v for kind, v in seen if kind == "maxpool"]
    assert pooled and all(isinstance(v, tuple) for v in pooled), seen
