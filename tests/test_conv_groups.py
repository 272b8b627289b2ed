"""Grouped (depthwise) and dilated convolutions, Conv1d and Conv2d, with power-of-two
quantisers: Brevitas == simulator == hls4ml C simulation == RTL, bit for bit."""

from __future__ import annotations

import warnings
from pathlib import Path

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
from qnet.hw.fixed import FixedType  # noqa: E402
from qnet.hw.graph import Conv, HwGraph, Input  # noqa: E402

torch.set_num_threads(1)

ACT = Int8ActPerTensorFixedPoint.let(bit_width=6)
RELU = Uint8ActPerTensorFixedPoint.let(bit_width=4)
W4 = Int8WeightPerTensorFixedPoint.let(bit_width=4)
SIZE = 6  # spatial size


def _conv(dims: int, *args: int, **kw: object) -> torch.nn.Module:
    cls = qnn.QuantConv1d if dims == 1 else qnn.QuantConv2d
    return cls(*args, weight_quant=W4, bias_quant=Int16Bias, **kw)


def build(dims: int) -> torch.nn.Sequential:
    """A depthwise-separable block (depthwise k3 + pointwise 1x1), a grouped dilated conv and
    a dilated strided conv with bias."""
    torch.manual_seed(dims)
    m = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=ACT, return_quant_tensor=True),
        _conv(dims, 4, 4, 3, groups=4, padding=1, bias=False),  # depthwise
        qnn.QuantReLU(act_quant=RELU, return_quant_tensor=True),
        _conv(dims, 4, 4, 1, bias=False),  # pointwise
        qnn.QuantReLU(act_quant=RELU, return_quant_tensor=True),
        _conv(dims, 4, 4, 3, groups=2, dilation=2, padding=2, bias=False),  # grouped, dilated
        qnn.QuantIdentity(act_quant=ACT, return_quant_tensor=True),
        _conv(dims, 4, 2, 3, groups=2, dilation=(3 if dims == 1 else (2, 3)), stride=2, padding=1),
    )
    m.eval()
    with torch.no_grad():
        m(torch.randn(16, 4, *([SIZE] * dims)))
    return m


def _brevitas(m: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = m(torch.from_numpy(x))
    return getattr(out, "value", out).double().numpy()


def _inputs(dims: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4, *([SIZE] * dims))).astype(np.float32)
    x[: n // 4] = np.round(x[: n // 4] * 8) / 8  # on the input grid: ties included
    return x


@pytest.mark.parametrize("dims", [1, 2])
def test_grouped_dilated_conv_simulator_equals_brevitas(dims: int, tmp_path: Path) -> None:
    m = build(dims)
    graph = qnet.lower(m, torch.zeros(1, 4, *([SIZE] * dims)))
    convs = [layer for layer in graph.layers if isinstance(layer, Conv)]
    assert [c.groups for c in convs] == [4, 1, 2, 2]
    assert convs[2].dilation == (2,) * dims and convs[0].weight.shape[1] == 1
    x = _inputs(dims, 400, dims)
    assert np.array_equal(qnet.simulate(graph, x), _brevitas(m, x))
    # the graph round-trips through its file with groups and dilation
    loaded = HwGraph.load(graph.save(tmp_path / "g.npz"))
    assert [(c.groups, c.dilation) for c in loaded.layers if isinstance(c, Conv)] == [
        (c.groups, c.dilation) for c in convs
    ]
    assert np.array_equal(qnet.simulate(loaded, x[:20]), qnet.simulate(graph, x[:20]))
    for flow in ("hls", "rtl"):  # both cost models take the layer
        est = qnet.estimate(graph, flow=flow)
        assert [r.name for r in est.layers if r.kind == "conv"] == [c.name for c in convs]


def test_dense_equivalent_is_the_same_map() -> None:
    rng = np.random.default_rng(0)
    t = FixedType(6, 3)
    conv = Conv(
        "c",
        ("in",),
        (6, 3, 2),
        FixedType(24, 12),
        weight=rng.integers(-7, 8, size=(6, 2, 2, 3)),
        weight_type=FixedType(4, 1),
        acc_type=FixedType(24, 12),
        stride=(2, 1),
        padding=(1, 0),
        groups=2,
        dilation=(3, 2),
    )
    plain = conv.dense_equivalent()
    assert plain.groups == 1 and plain.dilation == (1, 1) and plain.weight.shape == (6, 4, 4, 5)
    x = torch.from_numpy(rng.integers(t.int_min, t.int_max + 1, size=(5, 4, 7, 7)).astype(float))
    want = torch.nn.functional.conv2d(
        x, torch.from_numpy(conv.weight.astype(float)), stride=2, padding=(1, 0), groups=2,
        dilation=(3, 2),
    )  # fmt: skip
    got = torch.nn.functional.conv2d(
        x, torch.from_numpy(plain.weight.astype(float)), stride=2, padding=(1, 0)
    )
    assert want.shape[1:] == (6, 3, 2) and torch.equal(want, got)


@pytest.mark.csim
@pytest.mark.rtl
@pytest.mark.parametrize("dims", [2, pytest.param(1, marks=pytest.mark.slow)])
def test_grouped_dilated_conv_csim_and_rtl_exact(dims: int, tmp_path: Path) -> None:
    m = build(dims)
    x = _inputs(dims, 64, 10 + dims)
    graph = qnet.lower(m, torch.zeros(1, 4, *([SIZE] * dims)))
    export = qnet.to_hls4ml(graph, output_dir=tmp_path / "prj")
    classes = [layer.class_name for layer in export.hls_model.get_layers()]
    # depthwise as hls4ml's DepthwiseConv; grouped/dilated ones as plain convolutions
    assert classes.count(f"DepthwiseConv{dims}D") == 1 and classes.count(f"Conv{dims}D") == 2
    export.compile()
    report = qnet.verify(m, x, rtl=True, graph=graph, hls_export=export)
    assert report.all_exact, report.table()
    assert {r.name for r in report.executors if r.ran} >= {"brevitas", "simulator", "csim", "rtl"}


@pytest.mark.parametrize("wide", [False, True])
def test_grouped_simulation_equals_its_plain_equivalent(wide: bool) -> None:
    """The simulator's grouped/dilated kernel (batched over the groups) against the same map
    as a plain convolution, on the float path and on the int64 path (bound past 2**53)."""
    rng = np.random.default_rng(3)
    in_t = FixedType(40, 20) if wide else FixedType(6, 3)
    w_t = FixedType(16, 4) if wide else FixedType(4, 1)
    weight = rng.integers(w_t.int_min, w_t.int_max + 1, size=(6, 2, 3, 2))
    acc = FixedType(62, 30) if wide else FixedType(24, 12)
    out = FixedType(50, 26) if wide else acc  # from_int: at most 53 bits
    conv = Conv(
        "c", ("in",), (6, 3, 3), out, weight=weight, weight_type=w_t, acc_type=acc,
        stride=(2, 1), padding=(1, 0), groups=3, dilation=(2, 3),
    )  # fmt: skip
    graphs = [
        HwGraph((Input("in", (), (6, 7, 6), in_t), layer))
        for layer in (conv, conv.dense_equivalent())
    ]
    x = in_t.from_int(rng.integers(in_t.int_min, in_t.int_max + 1, size=(16, 6, 7, 6)))
    got, want = (qnet.simulate(g, x) for g in graphs)
    assert np.array_equal(got, want) and np.abs(want).max() > (2.0**20 if wide else 0)
