"""qnet.lower: clear errors for unsupported layers/quantisers, registry, metadata, save/load."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=UserWarning)
torch = pytest.importorskip("torch")

from brevitas import nn as qnn  # noqa: E402
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFixedPoint  # noqa: E402

import qnet  # noqa: E402
from qnet.errors import UnsupportedLayerError  # noqa: E402
from qnet.hw.graph import HwGraph  # noqa: E402
from qnet.hw.simulator import simulate  # noqa: E402
from qnet.lowering import register_lowerer  # noqa: E402
from qnet.models._quant import input_quant  # noqa: E402

torch.set_num_threads(1)
W4 = Int8WeightPerTensorFixedPoint.let(bit_width=4)


def _inp() -> qnn.QuantIdentity:
    return qnn.QuantIdentity(input_quant(6), return_quant_tensor=True)


def _float_scale_act() -> qnn.QuantIdentity:
    act = qnn.QuantIdentity(Int8ActPerTensorFloat, return_quant_tensor=True)
    act.train()
    with torch.no_grad():
        for _ in range(3):
            act(torch.rand(16, 4) * 0.3)  # statistics: scale ~ 0.3 / 127, not a power of two
    return act


def _lower(model: torch.nn.Module, shape: tuple[int, ...]) -> HwGraph:
    return qnet.lower(model, torch.zeros((1, *shape)))


@pytest.mark.parametrize(
    ("make", "shape", "fragments"),
    [
        (
            lambda: torch.nn.Sequential(_inp(), torch.nn.Tanh()),
            (4,),
            ["module '1' (Tanh)", "accepted", "QuantLinear"],
        ),
        (
            lambda: torch.nn.Sequential(
                _inp(), qnn.QuantConv2d(1, 2, 3, padding="same", weight_quant=W4, bias=False)
            ),
            (1, 8, 8),
            ["module '1' (QuantConv2d)", "padding='same'", "integer zero padding"],
        ),
        (
            lambda: torch.nn.Sequential(
                _inp(),
                qnn.QuantConv2d(2, 2, 3, padding=1, padding_mode="reflect", weight_quant=W4),
            ),
            (2, 8, 8),
            ["module '1' (QuantConv2d)", "padding_mode='reflect'", "zeros"],
        ),
        (
            lambda: torch.nn.Sequential(
                _float_scale_act(),
                qnn.QuantLinear(4, 3, bias=True),  # Brevitas defaults: float scale, float bias
                qnn.QuantLinear(3, 2, bias=False),
            ),
            (4,),
            ["module '2' (QuantLinear)", "float accumulator of layer '1'", "QuantReLU"],
        ),
        (
            lambda: torch.nn.Sequential(qnn.QuantLinear(4, 2, bias=False, weight_quant=W4)),
            (4,),
            ["module '0' (QuantLinear)", "unquantised model input", "QuantIdentity"],
        ),
        (
            lambda: torch.nn.Sequential(
                _inp(),
                qnn.QuantLinear(4, 3, bias=False, weight_quant=W4),
                torch.nn.BatchNorm1d(3),
                qnn.QuantLinear(3, 2, bias=False, weight_quant=W4),
            ),
            (4,),
            ["module '3' (QuantLinear)", "BatchNorm1d", "QuantReLU"],
        ),
    ],
    ids=[
        "tanh",
        "padding-same",
        "padding-reflect",
        "float-accumulator-consumed",
        "no-input-quant",
        "bn-without-act",
    ],
)
def test_unsupported_errors_name_module_class_and_alternative(make, shape, fragments) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = make()
    with pytest.raises(UnsupportedLayerError) as info:
        _lower(model, shape)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_unsupported_functional_op_is_reported_when_consumed() -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = _inp()
            self.fc = qnn.QuantLinear(4, 2, bias=False, weight_quant=W4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.q(x) * 2)

    with pytest.raises(UnsupportedLayerError, match=r"module 'fc' \(QuantLinear\).*mul"):
        _lower(Net(), (4,))


def test_duplicate_registration_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_lowerer(qnn.QuantLinear)(lambda ctx, call: None)


def test_accumulator_bound_and_float32_flag() -> None:
    torch.manual_seed(0)
    small = torch.nn.Sequential(_inp(), qnn.QuantLinear(4, 2, bias=False, weight_quant=W4))
    g = _lower(small, (4,))
    # 6-bit unsigned input (max mantissa 63) x 4-bit weights (|w| <= 7): bound <= 4 * 63 * 7
    w = np.abs(g.layers[1].weight).sum(axis=1).max()
    assert g.meta["acc_bounds"]["1"] == 63 * w
    assert g.meta["float32_inexact"] == []
    big = torch.nn.Sequential(
        qnn.QuantIdentity(input_quant(8), return_quant_tensor=True),
        qnn.QuantLinear(4096, 2, bias=False, weight_quant=Int8WeightPerTensorFixedPoint),
    )
    with torch.no_grad():
        big[1].weight.fill_(1.0)
    g = _lower(big, (4096,))
    assert g.meta["float32_inexact"] == ["1"]  # 255 * 4096 * 64 > 2**24


def test_lowered_graph_saves_and_loads(tmp_path) -> None:  # noqa: ANN001
    from qnet.models import ModelConfig, build_model

    torch.manual_seed(1)
    model = build_model(
        ModelConfig("convnet2d", (1, 8, 8), 4, channels=(3, 4), hidden=(8,), batchnorm=True)
    ).eval()
    g = _lower(model, (1, 8, 8))
    path = g.save(tmp_path / "g.npz")
    loaded = HwGraph.load(path)
    x = np.random.default_rng(0).uniform(-0.5, 1.5, (50, 1, 8, 8))
    np.testing.assert_array_equal(simulate(loaded, x), simulate(g, x))
    assert [type(layer).__name__ for layer in loaded.layers].count("MultiThreshold") == 2
