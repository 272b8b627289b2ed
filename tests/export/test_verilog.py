"""HwGraph -> Verilog (da4ml) -> Verilator: bit-exact against the simulator."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hw_graphs import act_type, make_convnet, make_mlp, random_inputs  # noqa: E402

from qnet.errors import OutputExistsError, UnsupportedLayerError  # noqa: E402
from qnet.hw.fixed import FixedType, Overflow, Rounding  # noqa: E402
from qnet.hw.graph import (  # noqa: E402
    Add,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    HwGraph,
    Input,
    MultiThreshold,
    Quant,
)
from qnet.hw.simulator import simulate  # noqa: E402

pytest.importorskip("da4ml", reason="da4ml is not installed (pip install -e '.[rtl]')")

pytestmark = pytest.mark.rtl


def _verilator_missing() -> str | None:
    from qnet.errors import ToolNotFoundError
    from qnet.export.verilog import verilator_env

    try:
        verilator_env()
    except ToolNotFoundError as exc:
        return str(exc)
    return None


needs_verilator = pytest.mark.skipif(
    _verilator_missing() is not None, reason=f"Verilator unavailable: {_verilator_missing()}"
)


@pytest.fixture(scope="session")
def rtl_cache(tmp_path_factory):
    """Verilator builds shared by the tests of one session, keyed by name."""
    from qnet.export.verilog import build_rtl

    cache: dict = {}
    root = tmp_path_factory.mktemp("rtl")

    def get(key: str, graph: HwGraph, **kw):
        if key not in cache:
            cache[key] = build_rtl(graph, root / key, **kw)
        return cache[key]

    return get


def corner_inputs(graph: HwGraph) -> np.ndarray:
    """Inputs at the input quantiser's edges: far outside the range (saturation), exactly at
    every tie between two mantissas (round-half-even decides), and at min/max."""
    t = graph.input_type
    shape = graph.input.out_shape
    size = int(np.prod(shape))
    ties = (np.arange(t.int_min - 2, t.int_max + 2) + 0.5) * t.step  # every half-lsb point
    edges = np.array([-1e6, -3.0, -t.step / 2, 0.0, t.min, t.max, t.max + t.step / 2, 3.0, 1e6])
    values = np.concatenate([ties, edges])
    rows = []
    for shift in range(0, len(values), max(1, len(values) // 12)):
        rows.append(np.roll(np.resize(values, size), shift))
    rows.append(np.full(size, 1e6))
    rows.append(np.full(size, -1e6))
    rows.append(np.full(size, t.max + t.step / 2))
    return np.stack(rows).reshape(-1, *shape)


def _check_exact(model, graph: HwGraph, x: np.ndarray) -> None:
    ref = simulate(graph, x)
    got = model.predict(x)
    assert got.dtype == np.float64 and got.shape == ref.shape
    diff = np.argwhere(got != ref)
    assert diff.size == 0, f"{len(diff)} mismatches, first at {diff[:5].tolist()}"


# ------------------------------------------------------------------------------ casts
def test_every_cast_mode_exhaustively_in_traced_logic():
    """Every rounding x overflow mode, exhaustively over the source mantissas, through the
    traced da4ml program (C++ interpreter) against FixedType.quantize_int."""
    import da4ml.trace as tr

    from qnet.export.rtl_trace import _kif, cast_array

    n_checked = 0
    for src in (FixedType(9, 4, True), FixedType(7, 3, False)):
        k, i, f = _kif(src)
        inp = tr.FixedVariableArray.from_kif(
            np.array([k]), np.array([i]), np.array([f]), hwconf=tr.HWConfig(1, -1, -1)
        )
        mant = np.arange(src.int_min, src.int_max + 1)
        x = src.from_int(mant)[:, None]
        for rounding in Rounding:
            for overflow in Overflow:
                for signed in (True, False):
                    for width, integer in ((4, 2), (3, -1), (5, 5), (2, 1)):
                        if overflow is Overflow.SAT_SYM and not signed:
                            continue
                        dst = FixedType(width, integer, signed, rounding, overflow)
                        out = cast_array(inp._vars, dst)
                        comb = tr.comb_trace(
                            list(inp._vars.ravel()), list(out.ravel()), keep_dead_inputs=True
                        )
                        got = comb.predict(x)[:, 0]
                        ref = dst.from_int(dst.quantize_int(mant, src.frac))
                        assert np.array_equal(got, ref), f"{src} -> {dst}"
                        n_checked += 1
    assert n_checked > 300


def test_threshold_avgpool_add_graph_in_traced_logic():
    """MultiThreshold (increasing and decreasing), AvgPool, Add, Quant through the trace."""
    from qnet.export.verilog import trace_predict

    rng = np.random.default_rng(3)
    x_t = FixedType(8, 0, False, Rounding.RND_CONV, Overflow.SAT)
    w_t = FixedType(4, 1)
    w = rng.integers(-8, 8, size=(3, 2, 3, 3))
    acc_t = FixedType(20, 8)
    conv_out = FixedType(12, 5, True, Rounding.RND_CONV, Overflow.SAT)
    thr = np.sort(rng.integers(-600, 600, size=(3, 7)), axis=1)
    mt_t = FixedType(4, 2, False)
    pool_t = FixedType(6, 3, False, Rounding.RND_CONV, Overflow.SAT)
    d_w = rng.integers(-8, 8, size=(5, 12))
    d_acc = FixedType(24, 12)
    d_out = FixedType(8, 4, True, Rounding.RND, Overflow.WRAP)
    layers = (
        Input("inp", (), (2, 4, 4), x_t),
        Conv(
            "conv",
            ("inp",),
            (3, 4, 4),
            conv_out,
            weight=w,
            weight_type=w_t,
            acc_type=acc_t,
            stride=(1, 1),
            padding=(1, 1),
        ),
        MultiThreshold(
            "mt",
            ("conv",),
            (3, 4, 4),
            mt_t,
            thresholds=thr,
            increasing=np.array([True, False, True]),
            out_base=1,
        ),
        AvgPool("pool", ("mt",), (3, 2, 2), pool_t, kernel=(2, 2), stride=(2, 2)),
        Flatten("flat", ("pool",), (12,), pool_t),
        Dense("fc", ("flat",), (5,), d_out, weight=d_w, weight_type=w_t, acc_type=d_acc),
        Quant("q", ("fc",), (5,), FixedType(6, 2, True, Rounding.RND_CONV, Overflow.SAT_SYM)),
        Add("add", ("fc", "q"), (5,), FixedType(6, 3, True, Rounding.TRN_ZERO, Overflow.SAT)),
    )
    graph = HwGraph(layers)
    x = np.concatenate([rng.uniform(-0.1, 1.1, size=(600, 2, 4, 4)), corner_inputs(graph)])
    ref = simulate(graph, x, trace=True)
    for layer in graph.layers[1:]:
        got = trace_predict(graph, x, upto=layer.name)
        assert np.array_equal(got, ref[layer.name]), layer.name
    # the thresholds and saturations were exercised, not constant
    assert len(np.unique(ref["mt"])) > 4 and len(np.unique(ref["add"])) > 4


# ------------------------------------------------------------------------------ Verilator
@needs_verilator
def test_mlp_rtl_equals_simulator(rtl_cache):
    graph = make_mlp(4, seed=0, n_in=16, hidden=(16,))
    model = rtl_cache("mlp", graph)
    x = np.concatenate([random_inputs(graph, 1500, seed=5), corner_inputs(graph)])
    _check_exact(model, graph, x)
    # the ReLU saturated (ap_ufixed<4,2,RND_CONV,SAT>) on some inputs: saturation was tested
    assert (simulate(graph, x, trace=True)["relu0"] == act_type(4).max).any()


@pytest.mark.slow  # the lowered zoo ConvNet2d below covers the same layers in CI
@needs_verilator
def test_convnet2d_rtl_equals_simulator(rtl_cache):
    graph = make_convnet(2, 4, seed=1, size=8, ch=(2, 4))
    model = rtl_cache("convnet2d", graph)
    x = np.concatenate([random_inputs(graph, 1200, seed=6), corner_inputs(graph)])
    _check_exact(model, graph, x)


@needs_verilator
def test_ports_have_the_graph_types(rtl_cache):
    graph = make_mlp(4, seed=0, n_in=16, hidden=(16,))
    model = rtl_cache("mlp", graph)
    top = (model.path / "src" / "qnet_model_wrapper.v").read_text()
    n_in_bits = 16 * graph.input_type.width
    n_out_bits = 10 * graph.output_type.width
    assert re.search(rf"input \[{n_in_bits - 1}:0\] model_inp", top)
    assert re.search(rf"output \[{n_out_bits - 1}:0\] model_out", top)
    # integer interface: mantissas in, mantissas out, in the graph's types
    xm = graph.input_type.to_int(random_inputs(graph, 50, seed=9))
    out = model.predict_int(xm)
    assert out.min() >= graph.output_type.int_min and out.max() <= graph.output_type.int_max


@needs_verilator
def test_pipelined_rtl_equals_simulator(rtl_cache):
    graph = make_mlp(3, seed=2, n_in=8, hidden=(8,))
    model = rtl_cache("mlp_pipe", graph, pipeline_stages=3)
    assert model.project.latency >= 2
    x = np.concatenate([random_inputs(graph, 1000, seed=7), corner_inputs(graph)])
    _check_exact(model, graph, x)


# ------------------------------------------------------------------------------ errors
def _lstm_graph(seed: int, return_sequences: bool, steps: int = 4) -> HwGraph:
    sys.path.insert(0, str(Path(__file__).parents[1] / "hw"))
    from test_lstm import RC, SAT, _random_layer

    rng = np.random.default_rng(seed)
    layer = _random_layer(rng, return_sequences, steps)
    in_t = FixedType(5, 1, True, RC, SAT)
    return HwGraph((Input("x", (), (steps, 3), in_t), layer))


def test_lstm_unrolled_in_traced_logic():
    """The LSTM (tables for sigmoid/tanh, variable products) traced step by step."""
    from qnet.export.verilog import trace_predict

    for seed, return_sequences in ((0, False), (1, True)):
        graph = _lstm_graph(seed, return_sequences)
        x = np.random.default_rng(seed).uniform(-1.3, 1.3, size=(1500, 4, 3))
        assert np.array_equal(trace_predict(graph, x), simulate(graph, x))


@needs_verilator
def test_lstm_rtl_equals_simulator(rtl_cache):
    graph = _lstm_graph(2, True, steps=3)
    model = rtl_cache("lstm", graph)
    x = np.concatenate(
        [np.random.default_rng(3).uniform(-1.3, 1.3, size=(1000, 3, 3)), corner_inputs(graph)]
    )
    _check_exact(model, graph, x)


def test_layer_kind_without_tracer_is_refused(tmp_path, monkeypatch):
    from qnet.export import verilog

    monkeypatch.delitem(verilog.TRACERS, "maxpool")
    graph = make_convnet(2, 2, ch=(1, 1))
    with pytest.raises(UnsupportedLayerError, match=r"'pool1' \(maxpool.*Supported kinds"):
        verilog.to_verilog(graph, tmp_path / "v")
    assert not (tmp_path / "v").exists()


def test_existing_output_is_refused_without_force(tmp_path):
    from qnet.export.verilog import to_verilog

    graph = make_mlp(2, seed=0, n_in=4, hidden=(4,))
    out = tmp_path / "v"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        to_verilog(graph, out)
    to_verilog(graph, out, force=True)
    assert not (out / "keep.txt").exists() and (out / "src" / "qnet_model_wrapper.v").is_file()


# ------------------------------------------------------------------------------ zoo models
def _lowered(kind: str, **kw) -> HwGraph:
    torch = pytest.importorskip("torch")
    from qnet.lowering import lower
    from qnet.models import ModelConfig, build_model

    cfg = ModelConfig(kind=kind, num_classes=10, w_bits=4, a_bits=4, in_bits=8, **kw)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if cfg.batchnorm:  # non-trivial BatchNorm statistics, so the thresholds differ per channel
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(-1.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
    return lower(model, torch.zeros((1, *cfg.in_shape)))


def test_lowered_zoo_models_every_layer_in_traced_logic():
    from qnet.export.verilog import trace_layers

    rng = np.random.default_rng(11)
    for graph in (
        _lowered("mlp", in_shape=(16,), hidden=(12,)),
        _lowered("convnet2d", in_shape=(1, 8, 8), channels=(2, 4), hidden=(8,), batchnorm=True),
    ):
        x = np.concatenate(
            [rng.uniform(-0.1, 1.1, size=(800, *graph.input.out_shape)), corner_inputs(graph)]
        )
        ref = simulate(graph, x, trace=True)
        got = trace_layers(graph, x)
        for layer in graph.layers:
            assert np.array_equal(got[layer.name], ref[layer.name]), layer.name


@needs_verilator
def test_lowered_convnet2d_rtl_equals_simulator(rtl_cache):
    graph = _lowered("convnet2d", in_shape=(1, 8, 8), channels=(2, 4), hidden=(8,), batchnorm=True)
    assert "multithreshold" in {layer.kind for layer in graph.layers}
    model = rtl_cache("zoo_convnet2d", graph)
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.uniform(-0.1, 1.1, size=(1000, 1, 8, 8)), corner_inputs(graph)])
    _check_exact(model, graph, x)


def test_rtl_command_writes_project_and_refuses_overwrite(tmp_path):
    import json
    import os
    import subprocess

    graph = make_mlp(2, seed=0, n_in=4, hidden=(4,))
    src = graph.save(tmp_path / "g.npz")
    out = tmp_path / "prj"
    cmd = [sys.executable, "-c", "from qnet.cli import main; main()", "rtl", str(src)]
    env = dict(os.environ, COLUMNS="200")
    first = subprocess.run(
        [*cmd, "--out", str(out), "--pipeline-stages", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    meta = json.loads((out / "verilog" / "qnet_rtl.json").read_text())
    assert meta["latency"] >= 1 and meta["n_inputs"] == 4 and meta["n_outputs"] == 10
    assert json.loads((out / "qnet_export.json").read_text())["board"] == "icebreaker"
    again = subprocess.run(
        [*cmd, "--out", str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert again.returncode == 2 and "--force" in again.stderr + again.stdout
