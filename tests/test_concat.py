"""``torch.cat`` of quantised tensors (two branches joined along the channels): a ``Concat``
layer, Brevitas == simulator == hls4ml C simulation == RTL, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", category=UserWarning)
import brevitas.nn as qnn  # noqa: E402
from brevitas.quant import (  # noqa: E402
    Int8ActPerTensorFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Int16Bias,
    Uint8ActPerTensorFixedPoint,
)

import qnet  # noqa: E402
from qnet.errors import UnsupportedLayerError  # noqa: E402
from qnet.hw.fixed import FixedType  # noqa: E402
from qnet.hw.graph import Concat  # noqa: E402

torch.set_num_threads(1)

ACT = Int8ActPerTensorFixedPoint.let(bit_width=6)
RELU = Uint8ActPerTensorFixedPoint.let(bit_width=4)
W4 = Int8WeightPerTensorFixedPoint.let(bit_width=4)


class Branches(torch.nn.Module):
    """Two conv branches joined by a QuantTensor cat (equal types), then a cat of three plain
    tensors of different types (signed 6-bit and unsigned 4-bit: a common type)."""

    def __init__(self) -> None:
        super().__init__()
        self.q = qnn.QuantIdentity(act_quant=ACT, return_quant_tensor=True)
        self.ca = qnn.QuantConv2d(2, 3, 3, padding=1, weight_quant=W4, bias_quant=Int16Bias)
        self.ra = qnn.QuantReLU(act_quant=RELU, return_quant_tensor=True)
        self.cb = qnn.QuantConv2d(2, 2, 1, weight_quant=W4, bias=False)
        self.rb = qnn.QuantReLU(act_quant=RELU, return_quant_tensor=True)
        self.head = qnn.QuantConv2d(9, 3, 3, stride=2, weight_quant=W4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.q(x)
        a = self.ra(self.ca(x))
        b = self.rb(self.cb(x))
        y = torch.cat([a, b], dim=1)  # IntQuantTensor
        z = torch.cat((y.value, x.value, b.value), -3)
        return self.head(z)


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    m = Branches().eval()
    with torch.no_grad():
        m(torch.randn(8, 2, 6, 6))
    return m


def _inputs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 6, 6)).astype(np.float32)
    x[: n // 4] = np.round(x[: n // 4] * 16) / 32  # on the input grid: ties included
    return x


def test_concat_simulator_equals_brevitas() -> None:
    m = build()
    graph = qnet.lower(m, torch.zeros(1, 2, 6, 6))
    cats = [layer for layer in graph.layers if isinstance(layer, Concat)]
    assert [len(c.inputs) for c in cats] == [2, 3]
    assert cats[0].out_type == graph[cats[0].inputs[0]].out_type  # equal types: kept
    # s6 with 5 fractional bits and u4 with 4: the s6.5 grid holds both exactly
    assert cats[1].out_type == FixedType(6, 1, True)
    assert cats[1].out_shape == (9, 6, 6)
    rows = {r.name: r for r in qnet.estimate(graph, flow="rtl").layers}
    assert rows[cats[1].name].note == "wiring" and rows["head"].lut > 0
    x = _inputs(400, 1)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).double().numpy()
    assert np.array_equal(qnet.simulate(graph, x), want)


class _Cat(torch.nn.Module):
    def __init__(self, batch_axis: bool) -> None:
        super().__init__()
        self.q = qnn.QuantIdentity(act_quant=ACT, return_quant_tensor=True)
        self.register_buffer("c", torch.ones(1, 4))
        self.batch_axis = batch_axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.q(x).value
        if self.batch_axis:
            return torch.cat([v, v], dim=0)
        return torch.cat([v, self.c.expand(v.shape[0], -1)], dim=1)


@pytest.mark.parametrize(
    ("batch_axis", "why"), [(False, "not computed by the model"), (True, "the batch axis")]
)
def test_concat_refusals_name_the_call(batch_axis: bool, why: str) -> None:
    with pytest.raises(UnsupportedLayerError, match=rf"':cat#0'.*{why}.*accepted: torch.cat"):
        qnet.lower(_Cat(batch_axis).eval(), torch.zeros(1, 4))


@pytest.mark.csim
@pytest.mark.rtl
def test_concat_csim_and_rtl_exact() -> None:
    report = qnet.verify(build(), _inputs(64, 2), rtl=True)
    assert report.all_exact, report.table()
    assert {r.name for r in report.executors if r.ran} >= {"brevitas", "simulator", "csim", "rtl"}
