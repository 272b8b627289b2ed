"""Host preprocessing before the first quantiser and a float tail after the last one, as users
write them in ``forward``: recorded in the HwGraph, replayed in float32 exactly as torch."""

from __future__ import annotations

import json
import runpy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", category=UserWarning)
import brevitas.nn as qnn  # noqa: E402
from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint  # noqa: E402
from torch import nn  # noqa: E402

import qnet  # noqa: E402
from qnet.errors import UnsupportedLayerError  # noqa: E402
from qnet.export.host import write_host_files  # noqa: E402
from qnet.hw.host import HostOp, fma32, run_host  # noqa: E402

torch.set_num_threads(1)


def _lin(i: int, o: int) -> qnn.QuantLinear:
    return qnn.QuantLinear(i, o, bias=False, weight_quant=Int8WeightPerTensorFixedPoint)


def _act() -> qnn.QuantIdentity:
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)


class Standardised(nn.Module):
    """(x - mean) / std with registered float32 buffers, then a permute/flatten, clamp, and a
    float tail: BatchNorm1d at the output, an affine and a ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([[0.3], [0.5], [0.7]]))
        self.register_buffer("std", torch.tensor([[0.2], [0.25], [0.3]]))
        self.inp = _act()
        self.fc1 = _lin(12, 16)
        self.bn = nn.BatchNorm1d(16)
        self.act = _act()
        self.fc2 = _lin(16, 5)
        self.out_bn = nn.BatchNorm1d(5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std  # (N, 3, 4)
        x = x.transpose(1, 2).reshape(x.shape[0], -1)
        x = torch.clamp(x / 255 * 255, -3.0, 3.0)
        x = self.act(self.bn(self.fc1(self.inp(x))))
        y = self.out_bn(self.fc2(x))
        return torch.relu(2.0 * y + 0.25)


def _randomise(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.3)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))
    model.eval()
    with torch.no_grad():
        model(torch.rand(64, 3, 4) * 2)  # calibrate the runtime-statistics scales
    return model.eval()


@pytest.fixture(scope="module")
def model_and_graph() -> tuple[nn.Module, qnet.HwGraph]:
    torch.manual_seed(0)
    model = _randomise(Standardised())
    return model, qnet.lower(model, torch.zeros(1, 3, 4))


def _inputs(n: int = 500) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = (rng.random((n, 3, 4)) * 1.6 - 0.3).astype(np.float32)
    x[:50] = (np.round(x[:50] * 256) / 256).astype(np.float32)  # grid values (ties)
    return x


def test_preprocessing_and_float_tail_equal_brevitas(model_and_graph) -> None:  # noqa: ANN001
    model, graph = model_and_graph
    assert [op.op for op in graph.pre] == [
        "sub",
        "div",
        "permute",
        "reshape",
        "div",
        "mul",
        "clamp",
    ]
    assert [op.op for op in graph.post] == ["fma", "mul", "add", "relu"]
    x = _inputs()
    with torch.no_grad():
        want = model(torch.from_numpy(x)).double().numpy()
    got = qnet.simulate(graph, x)
    assert np.array_equal(got, want)


def test_project_host_py_reproduces_the_stages(model_and_graph, tmp_path) -> None:  # noqa: ANN001
    _, graph = model_and_graph
    write_host_files(graph, tmp_path)
    spec = json.loads((tmp_path / "host.json").read_text())
    assert [op["op"] for op in spec["pre"]] == [op.op for op in graph.pre]
    host = runpy.run_path(str(tmp_path / "host.py"))
    x = _inputs(100)
    assert np.array_equal(host["preprocess"](x), graph.preprocess(x))
    y = np.random.default_rng(1).normal(size=(100, 5)).astype(np.float32)
    assert np.array_equal(host["postprocess"](y), graph.postprocess(y).astype(np.float32))


def test_forked_preprocessing_is_refused() -> None:
    class Fork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = _act()
            self.fc = _lin(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x * 2.0
            return self.fc(self.inp(y + x))

    with pytest.raises(UnsupportedLayerError, match="two model tensors|forks"):
        qnet.lower(Fork().eval(), torch.zeros(1, 4))


@pytest.mark.parametrize(
    "op,torch_fn",
    [
        ("div255", lambda t: t / 255),
        ("mul_sub", lambda t: 2.0 * t - torch.tensor([1.0])),
        ("rsub", lambda t: 1 - t),
        ("rdiv", lambda t: 3.0 / t),
        ("neg_clamp", lambda t: torch.clamp(-t, min=-0.5)),
    ],
)
def test_host_ops_equal_torch_float32(op: str, torch_fn) -> None:  # noqa: ANN001
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = _act()
            self.fc = _lin(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.inp(torch_fn(x)))

    model = M().eval()
    with torch.no_grad():
        model(torch.rand(32, 8))
    graph = qnet.lower(model, torch.zeros(1, 8))
    x = (np.random.default_rng(2).normal(size=(400, 8)) * 1.5).astype(np.float32)
    with torch.no_grad():
        want_pre = torch_fn(torch.from_numpy(x)).numpy()
        want = model(torch.from_numpy(x)).double().numpy()
    assert np.array_equal(graph.preprocess(x), want_pre)
    assert np.array_equal(qnet.simulate(graph, x), want)


def test_fma32_is_correctly_rounded() -> None:
    from fractions import Fraction

    rng = np.random.default_rng(3)
    a = rng.normal(size=3000).astype(np.float32)
    b = rng.normal(size=3000).astype(np.float32)
    c = (rng.normal(size=3000) * 1e-3).astype(np.float32)
    # exact halfway cases: a * b + c lands on a float32 midpoint, tiny c decides
    a[:8] = np.float32(1 + 2**-23)
    b[:8] = np.float32(1 + 2**-1)
    got = fma32(a, b, c)
    for i in range(0, 3000, 7):
        exact = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        lo = np.float32(float(exact))
        cands = [np.nextafter(lo, np.float32(-np.inf)), lo, np.nextafter(lo, np.float32(np.inf))]
        best = min(
            cands, key=lambda v: (abs(Fraction(float(v)) - exact), int(v.view(np.int32)) & 1)
        )
        assert got[i] == best, (i, a[i], b[i], c[i])


def test_batchnorm_host_op_equals_torch_kernel() -> None:
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(7).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-2, 2)
        bn.running_var.uniform_(0.1, 3)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(5000, 7) * 5
    with torch.no_grad():
        want = bn(x).numpy()
    from qnet.lowering.host import _batchnorm_ops

    got = run_host((_batchnorm_ops(bn, 2, "bn"),), x.numpy())
    assert np.array_equal(got, want)


def test_unknown_host_op_is_a_format_error() -> None:
    from qnet.errors import FormatError

    with pytest.raises(FormatError, match="unknown"):
        HostOp("exp")
