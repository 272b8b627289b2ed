"""MultiThreshold (BatchNorm + quantised ReLU) through hls4ml: C simulation == simulator == Brevitas."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("hls4ml")

from hw_graphs import acc_for, act_type, in_type, w_type  # noqa: E402

import qnet  # noqa: E402
from qnet.hw.fixed import FixedType, Overflow, Rounding  # noqa: E402
from qnet.hw.graph import Conv, Dense, Flatten, HwGraph, Input, MultiThreshold  # noqa: E402
from qnet.models import build_model  # noqa: E402
from qnet.models.config import ModelConfig  # noqa: E402

pytestmark = [
    pytest.mark.csim,
    pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml C simulation"),
]


def _bn_model(kind: str, in_shape: tuple[int, ...], seed: int):
    """A zoo model with BatchNorm whose statistics are randomised (some negative gammas)."""
    torch.manual_seed(seed)
    model = build_model(
        ModelConfig(kind=kind, in_shape=in_shape, num_classes=10, batchnorm=True, a_bits=4)
    )
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.05, 2.0)
                mod.weight.uniform_(-1.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return model.eval()


def _inputs(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """Uniform in [-0.3, 1.3): about a third of the pixels saturate the input quantiser."""
    x = np.random.default_rng(seed).uniform(-0.3, 1.3, size=(n, *shape)).astype(np.float32)
    x[:20] = np.where(x[:20] > 0.5, 4.0, -4.0)  # fully saturated samples
    return x


def _export(kind, in_shape, io_type, board, tmp_path_factory):
    from qnet.export.hls import to_hls4ml

    model = _bn_model(kind, in_shape, seed=3)
    graph = qnet.lower(model, torch.zeros(1, *in_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export = to_hls4ml(
            graph, board, tmp_path_factory.mktemp(f"thr_{kind}") / "prj", io_type=io_type
        )
    # not compiled here: export.trace() builds the C simulation (with tracing) once
    return model, graph, export


@pytest.fixture(scope="module")
def convnet2d(tmp_path_factory):
    return _export("convnet2d", (1, 8, 8), "io_parallel", "kv260", tmp_path_factory)


@pytest.fixture(scope="module")
def convnet1d(tmp_path_factory):
    return _export("convnet1d", (1, 16), "io_stream", "zcu104", tmp_path_factory)


def _check_three_way(model, graph, export, x: np.ndarray) -> None:
    thresholds = [layer for layer in graph.layers if isinstance(layer, MultiThreshold)]
    assert len(thresholds) >= 2
    # the thresholds are not trivial: several distinct values per channel, both directions
    assert any(np.unique(t.thresholds[c]).size > 4 for t in thresholds for c in range(3))
    assert not all(t.increasing.all() for t in thresholds)
    with torch.no_grad():
        brevitas = model(torch.from_numpy(x)).double().numpy()
    sim = qnet.simulate(graph, x, trace=True)
    hls = export.trace(x)
    for t in thresholds:  # the layer itself, then everything after it
        np.testing.assert_array_equal(hls[t.name], sim[t.name], err_msg=t.name)
        # and its outputs take more than one value on these inputs
        assert np.unique(sim[t.name]).size > 2
    assert np.array_equal(hls[graph.output.name], sim[graph.output.name])
    assert np.array_equal(sim[graph.output.name], brevitas)


def test_convnet2d_batchnorm_io_parallel(convnet2d) -> None:
    model, graph, export = convnet2d
    _check_three_way(model, graph, export, _inputs((1, 8, 8), 500, seed=5))


def test_convnet1d_batchnorm_io_stream(convnet1d) -> None:
    model, graph, export = convnet1d
    assert export.io_type == "io_stream"
    _check_three_way(model, graph, export, _inputs((1, 16), 500, seed=6))


def test_hand_built_edge_cases(tmp_path) -> None:
    """Out-of-range thresholds, decreasing channels, a signed result with a negative base,
    no thresholds at all, and a MultiThreshold after a flatten (one channel per element)."""
    from qnet.export.hls import to_hls4ml
    from qnet.export.hls_threshold import threshold_hls_layer

    rng = np.random.default_rng(0)
    x_t = in_type(8)
    weight = rng.integers(-3, 4, size=(3, 1, 3, 3))
    bias = rng.integers(-40, 40, size=3)
    b_t = FixedType(8, 4)
    acc = acc_for(x_t, weight, w_type(3), bias, b_t)
    conv = Conv(
        "conv", ("inp",), (3, 4, 4), acc, weight=weight, weight_type=w_type(3), bias=bias,
        bias_type=b_t, acc_type=acc, stride=(1, 1), padding=(1, 1),
    )  # fmt: skip
    lo, hi = acc.int_min, acc.int_max
    span = np.linspace(lo // 4, hi // 4, 6).astype(np.int64)
    thr1 = np.stack([span, np.r_[lo - 50, lo - 1, span[2:4], hi + 1, hi + 99], span - 7])
    signed_out = FixedType(3, 3, signed=True, rounding=Rounding.RND_CONV, overflow=Overflow.SAT)
    mt1 = MultiThreshold(
        "mt1", ("conv",), (3, 4, 4), signed_out, thresholds=thr1,
        increasing=np.array([True, False, True]), out_base=-3,
    )  # fmt: skip
    flat = Flatten("flat", ("mt1",), (48,), signed_out)
    thr2 = np.sort(rng.integers(-4, 4, size=(48, 2)), axis=1)
    mt2 = MultiThreshold(
        "mt2", ("flat",), (48,), act_type(2), thresholds=thr2, increasing=rng.random(48) < 0.5
    )
    w2 = rng.integers(-3, 4, size=(5, 48))
    acc2 = acc_for(act_type(2), w2, w_type(3), np.zeros(5, np.int64), b_t)
    fc = Dense(
        "fc", ("mt2",), (5,), acc2, weight=w2, weight_type=w_type(3), bias=None, bias_type=None,
        acc_type=acc2,
    )  # fmt: skip
    mt3 = MultiThreshold(
        "mt3", ("fc",), (5,), act_type(2), thresholds=np.zeros((5, 0), np.int64),
        increasing=np.array([True, False, True, False, True]), out_base=2,
    )  # fmt: skip
    graph = HwGraph((Input("inp", (), (1, 4, 4), x_t), conv, mt1, flat, mt2, fc, mt3))

    attrs, precision = threshold_hls_layer(mt1, acc, (3, 4, 4))
    assert precision["threshold"] == FixedType(acc.width + 1, acc.integer + 1)
    stored = precision["threshold"].to_int(attrs["threshold_data"]).reshape(3, 6)
    assert stored[1, 0] == stored[1, 1] == lo and stored[1, 4] == stored[1, 5] == hi + 1

    export = to_hls4ml(graph, "kv260", tmp_path / "prj")  # trace() compiles it
    x = _inputs((1, 4, 4), 500, seed=9)
    x[20:40] = np.random.default_rng(1).uniform(-0.1, 0.1, size=(20, 1, 4, 4))
    sim = qnet.simulate(graph, x, trace=True)
    hls = export.trace(x)
    for name in ("mt1", "mt2", "fc", "mt3"):
        np.testing.assert_array_equal(hls[name], sim[name], err_msg=name)
    assert np.unique(sim["mt1"]).size >= 5 and sim["mt1"].min() < 0
    np.testing.assert_array_equal(sim["mt3"], 2.0)  # base 2, no thresholds, step 1
