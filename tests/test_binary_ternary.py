"""Binary (+-scale) and ternary (-scale, 0, +scale) quantisers: weights become 2-bit mantissas,
activations MultiThresholds (a sign or a two-sided threshold is not a rounding), all exact."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", category=UserWarning)
import brevitas.nn as qnn  # noqa: E402
from brevitas.quant import (  # noqa: E402
    Int8ActPerTensorFixedPoint,
    SignedBinaryActPerTensorConst,
    SignedBinaryWeightPerTensorConst,
    SignedTernaryActPerTensorConst,
    SignedTernaryWeightPerTensorConst,
)

import qnet  # noqa: E402

torch.set_num_threads(1)


class TernaryWeight(SignedTernaryWeightPerTensorConst):
    scaling_const = 0.5


class TernaryAct(SignedTernaryActPerTensorConst):
    scaling_const = 1.0


class BinaryWeight(SignedBinaryWeightPerTensorConst):
    scaling_const = 0.25


class BinaryAct(SignedBinaryActPerTensorConst):
    scaling_const = 1.0


def build() -> torch.nn.Sequential:
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(16, 32, bias=False, weight_quant=TernaryWeight),
        torch.nn.BatchNorm1d(32),
        qnn.QuantIdentity(act_quant=TernaryAct, return_quant_tensor=True),
        qnn.QuantLinear(32, 16, bias=False, weight_quant=BinaryWeight),
        qnn.QuantIdentity(act_quant=BinaryAct, return_quant_tensor=True),
        qnn.QuantLinear(16, 4, bias=False, weight_quant=TernaryWeight),
    )
    with torch.no_grad():
        m[2].running_mean.uniform_(-2, 2)
        m[2].running_var.uniform_(0.5, 2)
    m.eval()
    with torch.no_grad():
        m(torch.randn(64, 16))
    return m


def _brevitas(m: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = m(torch.from_numpy(x))
    return getattr(out, "value", out).double().numpy()


def test_binary_and_ternary_layers_are_exact() -> None:
    m = build()
    graph = qnet.lower(m, torch.zeros(1, 16))
    assert [layer.kind for layer in graph.layers] == [
        "input", "dense", "multithreshold", "dense", "multithreshold", "dense"
    ]  # fmt: skip
    assert set(np.unique(graph.layers[3].weight)) <= {-1, 1}
    assert set(np.unique(graph.layers[1].weight)) <= {-1, 0, 1}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    x[:100] = np.round(x[:100] * 8) / 8  # on the input grid, ties included
    assert np.array_equal(qnet.simulate(graph, x), _brevitas(m, x))


def test_ternary_input_quantiser_is_exact() -> None:
    """Brevitas' SignedTernaryActPerTensorConst is a 2-bit narrow rounding quantiser: on the
    model input it is the input port's type."""
    m = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=TernaryAct, return_quant_tensor=True),
        qnn.QuantLinear(4, 2, bias=False, weight_quant=TernaryWeight),
    ).eval()
    graph = qnet.lower(m, torch.zeros(1, 4))
    x = np.random.default_rng(2).normal(size=(500, 4)).astype(np.float32)
    x[:50] = np.float32(0.5)  # the tie: rounds half to even (0), as Brevitas
    assert np.array_equal(qnet.simulate(graph, x), _brevitas(m, x))


@pytest.mark.slow
@pytest.mark.csim
def test_binary_and_ternary_csim_and_rtl_equal_simulator() -> None:
    m = build()
    x = np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32)
    report = qnet.verify(m, x, rtl=True)
    assert report.all_exact, report.table()
    assert {r.name for r in report.executors if r.ran} >= {"brevitas", "simulator", "csim", "rtl"}
