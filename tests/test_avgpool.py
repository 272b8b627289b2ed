"""Average pooling over any window, global average pooling (``AdaptiveAvgPool2d(1)``,
``x.mean((2, 3))``) and Brevitas' ``TruncAvgPool2d`` on power-of-two quantised tensors:
Brevitas == simulator == hls4ml C simulation == RTL, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", category=UserWarning)
import brevitas.nn as qnn  # noqa: E402
from brevitas.inject.defaults import RoundTo8bit, TruncTo8bit  # noqa: E402
from brevitas.quant import (  # noqa: E402
    Int8ActPerTensorFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Uint8ActPerTensorFixedPoint,
)

import qnet  # noqa: E402
from qnet.errors import UnsupportedLayerError  # noqa: E402

torch.set_num_threads(1)

ACT = Int8ActPerTensorFixedPoint.let(bit_width=6)
RELU = Uint8ActPerTensorFixedPoint.let(bit_width=4)
W4 = Int8WeightPerTensorFixedPoint.let(bit_width=4)


class Pools(torch.nn.Module):
    """Three pooled branches joined by a cat: a global average over 36 values then a
    quantiser; TruncAvgPool2d (2x2, round to 6 bits) then a mean over 9 values and a QuantReLU;
    AvgPool2d(3) (9 values) then a quantiser and a mean over 4 values read by the QuantLinear
    directly."""

    def __init__(self) -> None:
        super().__init__()
        self.q = qnn.QuantIdentity(act_quant=ACT, return_quant_tensor=True)
        self.conv = qnn.QuantConv2d(2, 4, 3, padding=1, weight_quant=W4, bias=False)
        self.relu = qnn.QuantReLU(act_quant=RELU, return_quant_tensor=True)
        self.gap = torch.nn.AdaptiveAvgPool2d(1)
        self.q_gap = qnn.QuantIdentity(act_quant=ACT, return_quant_tensor=True)
        self.trunc = qnn.TruncAvgPool2d(2, trunc_quant=RoundTo8bit.let(bit_width=5))
        self.q_mean = qnn.QuantReLU(act_quant=RELU, return_quant_tensor=True)
        self.pool = torch.nn.AvgPool2d(3)
        self.q_pool = qnn.QuantIdentity(act_quant=ACT, return_quant_tensor=True)
        self.fc = qnn.QuantLinear(12, 3, weight_quant=W4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.conv(self.q(x)))  # 4x6x6
        g = torch.flatten(self.q_gap(self.gap(a)), 1)
        t = self.q_mean(self.trunc(a).value.mean((2, 3)))
        p = self.q_pool(self.pool(a)).value.mean(dim=(-1, -2))
        return self.fc(torch.cat([g.value, t.value, p], dim=1))


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    m = Pools().eval()
    with torch.no_grad():
        m(torch.randn(8, 2, 6, 6))
    return m


def _inputs(n: int, seed: int, shape: tuple[int, ...] = (2, 6, 6)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, *shape)) * 1.5).astype(np.float32)
    x[: n // 4] = np.round(x[: n // 4] * 16) / 32  # on the input grid: ties included
    return x


def _brevitas(m: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = m(torch.from_numpy(x))
    return getattr(out, "value", out).double().numpy()


def test_pools_simulator_equals_brevitas() -> None:
    m = build()
    graph = qnet.lower(m, torch.zeros(1, 2, 6, 6))
    kinds = {layer.name: layer.kind for layer in graph.layers}
    assert kinds["gap"] == "conv" and kinds["q_gap"] == "multithreshold"  # sum, then thresholds
    assert kinds["trunc"] == "avgpool" and kinds["trunc.trunc"] == "quant"
    assert kinds["pool"] == "conv" and kinds["q_pool"] == "multithreshold"
    assert "avgpool" in {kinds[n] for n in kinds if n.endswith("mean#1")}  # 4 values: a shift
    x = _inputs(1000, 1)
    assert np.array_equal(qnet.simulate(graph, x), _brevitas(m, x))


def test_global_mean_at_the_output_is_divided_on_the_host() -> None:
    """A model ending in a global average over 9 values: the hardware outputs the exact sum,
    the host divides in float32 as torch does."""
    torch.manual_seed(1)
    m = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=ACT, return_quant_tensor=True),
        qnn.QuantConv2d(2, 3, 3, padding=1, weight_quant=W4, bias=False),
        qnn.QuantReLU(act_quant=RELU, return_quant_tensor=True),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    ).eval()
    graph = qnet.lower(m, torch.zeros(1, 2, 3, 3))
    assert [op.op for op in graph.post] == ["div", "reshape"] and graph.output.kind == "conv"
    x = _inputs(1000, 2, (2, 3, 3))
    assert np.array_equal(qnet.simulate(graph, x), _brevitas(m, x))


@pytest.mark.parametrize(
    ("pool", "why"),
    [
        (lambda: qnn.TruncAvgPool2d(3, trunc_quant=TruncTo8bit), "window of 9 values"),
        (lambda: torch.nn.AdaptiveAvgPool2d(4), "windows of different sizes"),
    ],
)
def test_pool_refusals(pool, why: str) -> None:  # noqa: ANN001
    m = torch.nn.Sequential(qnn.QuantIdentity(act_quant=ACT, return_quant_tensor=True), pool())
    with pytest.raises(UnsupportedLayerError, match=rf"module '1'.*{why}.*accepted"):
        qnet.lower(m.eval(), torch.zeros(1, 2, 6, 6))


def test_non_power_of_two_mean_into_a_weighted_layer_is_refused() -> None:
    m = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=ACT, return_quant_tensor=True),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        qnn.QuantLinear(2, 2, weight_quant=W4, bias=False),
    ).eval()
    with pytest.raises(UnsupportedLayerError, match=r"module '3'.*mean over 9 values"):
        qnet.lower(m, torch.zeros(1, 2, 3, 3))


@pytest.mark.csim
@pytest.mark.rtl
def test_pools_csim_and_rtl_exact() -> None:
    report = qnet.verify(build(), _inputs(64, 3), rtl=True)
    assert report.all_exact, report.table()
    assert {r.name for r in report.executors if r.ran} >= {"brevitas", "simulator", "csim", "rtl"}


@pytest.mark.slow
@pytest.mark.csim
@pytest.mark.parametrize("model", ["pools", "concat", "conv_groups"])
def test_io_stream_csim_exact(model: str) -> None:
    """The same models through hls4ml's io_stream kernels (DepthwiseConv, Concatenate,
    thresholds): C simulation == simulator == Brevitas."""
    import test_concat
    import test_conv_groups

    if model == "pools":
        m, x = build(), _inputs(32, 7)
    elif model == "concat":
        m, x = test_concat.build(), test_concat._inputs(32, 7)
    else:
        m, x = test_conv_groups.build(2), test_conv_groups._inputs(2, 32, 7)
    report = qnet.verify(m, x, io_type="io_stream")
    assert report.all_exact, report.table()
