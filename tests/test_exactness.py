"""The exactness matrix: simulate(lower(model)) == Brevitas, bit for bit.

Every zoo model x bit widths {2, 3, 4, 6, 8} x (briefly trained, random weights), plus random
architectures (hypothesis) from the supported layers. >= 1,000 inputs per model, including
inputs outside the training range (saturation) and exact ties of the input quantiser.
Every model here stays inside the regime where Brevitas' float32 arithmetic is exact (accumulator
bounds < 2**24 lsb), which each test checks from the graph's metadata.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=UserWarning)
torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import qnet  # noqa: E402
from qnet.hw.simulator import simulate  # noqa: E402
from qnet.models import ModelConfig, build_model  # noqa: E402

# Two torch threads on these 2-core machines make small Brevitas models ~20x slower (and the
# suite runs with pytest -n 2): one thread per worker.
torch.set_num_threads(1)

N_INPUTS = 1200
BITS = (2, 3, 4, 6, 8)

#: zoo variants: (kind, in_shape, extra config). Adding the LSTM is one line here.
ZOO = {
    "convnet2d": ("convnet2d", (1, 8, 8), {"channels": (4, 8), "hidden": (16,)}),
    "convnet2d-bn": (
        "convnet2d",
        (1, 8, 8),
        {"channels": (4, 8), "hidden": (16,), "batchnorm": True},
    ),
    "convnet1d-bn": (
        "convnet1d",
        (2, 16),
        {"channels": (4, 6), "hidden": (12,), "batchnorm": True},
    ),
    "mlp": ("mlp", (24,), {"hidden": (16, 12)}),
}


def make_inputs(
    shape: tuple[int, ...], in_bits: int, lo: float = 0.0, hi: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Float32 inputs: 1/3 in range, 1/3 far outside (saturation), 1/3 exact ties.

    Ties sit at (k + 1/2) lsb of an input quantiser with lsb 2**-in_bits.
    """
    rng = np.random.default_rng(seed)
    n = N_INPUTS // 3
    span = hi - lo
    inside = rng.uniform(lo, hi, (n, *shape))
    outside = rng.uniform(lo - 2 * span, hi + 2 * span, (n, *shape))
    lsb = 2.0**-in_bits
    k = rng.integers(
        int(np.floor(lo / lsb)) - 2, int(np.ceil(hi / lsb)) + 2, (N_INPUTS - 2 * n, *shape)
    )
    ties = (k + 0.5) * lsb
    x = np.concatenate([inside, outside, ties]).astype(np.float32)
    assert np.array_equal(x[2 * n :].astype(np.float64), ties)  # ties are exact in float32
    return x


def assert_exact(model: object, x: np.ndarray) -> None:
    model.eval()
    graph = qnet.lower(model, torch.from_numpy(x[:1]))
    assert graph.meta["float32_inexact"] == [], "test model outside Brevitas' exact regime"
    with torch.no_grad():
        want = model(torch.from_numpy(x))
    want = (want.value if hasattr(want, "value") else want).double().numpy()
    got = simulate(graph, x.astype(np.float64))
    assert got.shape == want.shape
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{len(bad)} of {want.size} outputs differ; first at {bad[:3].tolist()}"


def quick_train(
    model: object, shape: tuple[int, ...], classes: int, steps: int = 25, seed: int = 0
) -> None:
    """A few Adam steps on a random labelled problem: non-random weights, scales and BN stats."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((256, *shape), generator=gen)
    y = torch.randint(0, classes, (256,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _step in range(steps):
        idx = torch.randint(0, 256, (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _zoo_params() -> list[object]:
    params = []
    for name in ZOO:
        for bits in BITS:
            for trained in (True, False):
                marks = [pytest.mark.slow] if bits in (3, 6) else []
                params.append(
                    pytest.param(
                        name,
                        bits,
                        trained,
                        marks=marks,
                        id=f"{name}-{bits}b-{'trained' if trained else 'random'}",
                    )
                )
    return params


@pytest.mark.parametrize(("variant", "bits", "trained"), _zoo_params())
def test_zoo_exact(variant: str, bits: int, trained: bool) -> None:
    kind, shape, extra = ZOO[variant]
    torch.manual_seed(bits * 7 + trained)
    config = ModelConfig(kind, shape, 5, w_bits=bits, a_bits=bits, in_bits=bits, **extra)
    model = build_model(config)
    if trained:
        quick_train(model, shape, 5, seed=bits)
    else:
        # random weights; BatchNorm statistics away from the identity so thresholds matter
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                with torch.no_grad():
                    m.weight.normal_()
                    m.bias.normal_(0, 0.5)
                    m.running_mean.normal_(0, 0.5)
                    m.running_var.uniform_(0.1, 3)
    assert_exact(model, make_inputs(shape, bits, seed=bits))


# ------------------------------------------------------------------ random architectures
def _random_model(draw: st.DrawFn) -> tuple[object, tuple[int, ...], float]:
    from brevitas import nn as qnn
    from brevitas.core.function_wrapper import FloorSte
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Int16Bias,
        Uint8ActPerTensorFixedPoint,
    )
    from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint

    from qnet.models._quant import input_quant

    dims = draw(st.sampled_from([0, 1, 2]))
    size = draw(st.integers(5, 9))
    chans = draw(st.integers(1, 3))
    shape = (size * 3,) if dims == 0 else (chans,) + (size,) * dims
    in_bits = draw(st.integers(2, 8))
    signed_in = draw(st.booleans())
    if signed_in:
        first = qnn.QuantIdentity(
            Int8ActPerTensorFixedPoint.let(bit_width=in_bits), return_quant_tensor=True
        )
    else:
        first = qnn.QuantIdentity(input_quant(in_bits), return_quant_tensor=True)
    layers: list[object] = [first]

    def wq() -> object:
        cls = draw(st.sampled_from([Int8WeightPerTensorFixedPoint, Int8WeightPerChannelFixedPoint]))
        return cls.let(bit_width=draw(st.integers(2, 8)))

    def act() -> object:
        bits = draw(st.integers(2, 8))
        kind = draw(st.sampled_from(["relu", "signed", "signed-floor", "narrow"]))
        if kind == "relu":
            return qnn.QuantReLU(
                Uint8ActPerTensorFixedPoint.let(bit_width=bits), return_quant_tensor=True
            )
        q = Int8ActPerTensorFixedPoint.let(bit_width=bits)
        if kind == "signed-floor":
            q = q.let(float_to_int_impl=FloorSte)
        if kind == "narrow":
            q = q.let(narrow_range=True)
        return qnn.QuantIdentity(q, return_quant_tensor=True)

    ch = shape[0]
    spatial = list(shape[1:])
    for _ in range(draw(st.integers(1, 2)) if dims else 0):
        out = draw(st.integers(1, 5))
        k = draw(st.integers(1, 3))
        stride = draw(st.integers(1, 2))
        pad = draw(st.integers(0, 1))
        if min(spatial) + 2 * pad < k:
            break
        conv = (qnn.QuantConv1d if dims == 1 else qnn.QuantConv2d)(
            ch,
            out,
            k,
            stride=stride,
            padding=pad,
            bias=draw(st.booleans()),
            weight_quant=wq(),
            bias_quant=Int16Bias,
            return_quant_tensor=False,
        )
        layers.append(conv)
        spatial = [(s + 2 * pad - k) // stride + 1 for s in spatial]
        ch = out
        if draw(st.booleans()):
            bn = (torch.nn.BatchNorm1d if dims == 1 else torch.nn.BatchNorm2d)(ch)
            with torch.no_grad():
                bn.weight.normal_()
                bn.bias.normal_(0, 0.5)
                bn.running_mean.normal_(0, 0.5)
                bn.running_var.uniform_(0.1, 3)
            layers.append(bn)
        layers.append(act())
        # Brevitas has a QuantTensor handler for avg_pool2d only (avg_pool1d returns a float tensor)
        pool = draw(st.sampled_from(["none", "max", "avg"] if dims == 2 else ["none", "max"]))
        if pool != "none" and min(spatial) >= 2:
            cls = {
                ("max", 1): torch.nn.MaxPool1d,
                ("max", 2): torch.nn.MaxPool2d,
                ("avg", 1): torch.nn.AvgPool1d,
                ("avg", 2): torch.nn.AvgPool2d,
            }[(pool, dims)]
            layers.append(cls(2))
            spatial = [s // 2 for s in spatial]
    if dims:
        layers.append(torch.nn.Flatten())
    width = ch * int(np.prod(spatial)) if dims else shape[0]
    for _ in range(draw(st.integers(0, 1))):
        hidden = draw(st.integers(2, 12))
        layers.append(
            qnn.QuantLinear(
                width,
                hidden,
                bias=draw(st.booleans()),
                weight_quant=wq(),
                bias_quant=Int16Bias,
                return_quant_tensor=False,
            )
        )
        layers.append(act())
        width = hidden
    layers.append(
        qnn.QuantLinear(
            width,
            3,
            bias=draw(st.booleans()),
            weight_quant=wq(),
            bias_quant=Int16Bias,
            return_quant_tensor=False,
        )
    )
    model = torch.nn.Sequential(*layers)
    return model, shape, -1.0 if signed_in else 0.0


class _Residual(torch.nn.Module):
    """QuantIdentity -> QuantLinear -> QuantReLU, added to a requantised skip (functional + or QuantEltwiseAdd)."""

    def __init__(self, features: int, bits: int, eltwise: bool) -> None:
        super().__init__()
        from brevitas import nn as qnn
        from brevitas.quant import (
            Int8WeightPerTensorFixedPoint,
            Int16Bias,
            Uint8ActPerTensorFixedPoint,
        )

        from qnet.models._quant import input_quant

        act = Uint8ActPerTensorFixedPoint.let(bit_width=bits)
        self.inp = qnn.QuantIdentity(input_quant(bits), return_quant_tensor=True)
        self.fc = qnn.QuantLinear(
            features,
            features,
            bias=True,
            weight_quant=Int8WeightPerTensorFixedPoint.let(bit_width=bits),
            bias_quant=Int16Bias,
        )
        self.relu = qnn.QuantReLU(act, return_quant_tensor=True)
        self.skip = qnn.QuantReLU(act, return_quant_tensor=True)
        self.eltwise = (
            qnn.QuantEltwiseAdd(input_quant=None, output_quant=None, return_quant_tensor=True)
            if eltwise
            else None
        )
        self.head = qnn.QuantLinear(
            features, 3, bias=False, weight_quant=Int8WeightPerTensorFixedPoint.let(bit_width=bits)
        )

    def forward(self, x: object) -> object:
        x = self.inp(x)
        a = self.relu(self.fc(x))
        b = self.skip(x)
        y = self.eltwise(a, b) if self.eltwise is not None else a + b
        return self.head(y)


def _calibrate(model: object, shape: tuple[int, ...], lo: float) -> None:
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand((64, *shape)) * (1 - lo) + lo)
    model.eval()


@settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    derandomize=True,
    max_examples=15,
)
@given(st.data())
def test_random_architectures_exact(data: st.DataObject) -> None:
    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    model, shape, lo = _random_model(data.draw)
    _calibrate(model, shape, lo)
    in_bits = int(model[0].act_quant.bit_width())
    assert_exact(model, make_inputs(shape, in_bits, lo=lo, seed=1))


@pytest.mark.parametrize("eltwise", [False, True], ids=["functional-add", "QuantEltwiseAdd"])
def test_residual_add_exact(eltwise: bool) -> None:
    torch.manual_seed(3)
    model = _Residual(10, 4, eltwise)
    _calibrate(model, (10,), 0.0)
    assert_exact(model, make_inputs((10,), 4, seed=2))


def test_functional_flatten_exact() -> None:
    from brevitas import nn as qnn
    from brevitas.quant import Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint

    from qnet.models._quant import input_quant

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = qnn.QuantIdentity(input_quant(5), return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(
                1, 3, 3, bias=False, weight_quant=Int8WeightPerTensorFixedPoint.let(bit_width=3)
            )
            self.act = qnn.QuantReLU(
                Uint8ActPerTensorFixedPoint.let(bit_width=3), return_quant_tensor=True
            )
            self.fc = qnn.QuantLinear(
                3 * 4 * 4,
                2,
                bias=False,
                weight_quant=Int8WeightPerTensorFixedPoint.let(bit_width=3),
            )

        def forward(self, x: object) -> object:
            x = self.act(self.conv(self.q(x)))
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(5)
    model = Net()
    _calibrate(model, (1, 6, 6), 0.0)
    assert_exact(model, make_inputs((1, 6, 6), 5, seed=3))
