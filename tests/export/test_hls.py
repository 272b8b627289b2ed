"""qnet.export.hls: precisions come from the HwGraph, layouts, errors, registry, tb_data."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

pytest.importorskip("hls4ml")

from hw_graphs import act_type, make_convnet, make_mlp, random_inputs  # noqa: E402

from qnet.errors import BoardError, ConfigError  # noqa: E402
from qnet.export.hls import register_hls_handler, to_hls4ml  # noqa: E402
from qnet.hw.fixed import FixedType, Overflow, Rounding  # noqa: E402
from qnet.hw.graph import AvgPool, Conv, Dense, HwGraph, ReLU  # noqa: E402
from qnet.hw.simulator import simulate  # noqa: E402


def _typedefs(path) -> dict[str, str]:
    """name -> element type of every ``typedef T name;`` / ``typedef nnet::array<T, n> name;``."""
    out = {}
    pattern = r"typedef\s+(?:nnet::array<)?(ap_u?(?:fixed|int)<[^>]*>)(?:,\s*[\d*]+>)?\s+(\w+)\s*;"
    for m in re.finditer(pattern, path.read_text()):
        out[m.group(2)] = re.sub(r",0>$", ">", m.group(1).replace(" ", ""))
    return out


@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_every_precision_comes_from_the_graph(tmp_path, io_type: str) -> None:
    graph = make_convnet(2, 4)
    export = to_hls4ml(graph, board="kv260", output_dir=tmp_path / "prj", io_type=io_type)
    types = _typedefs(tmp_path / "prj" / "firmware" / "defines.h")
    model_layers = {layer.name: layer for layer in export.hls_model.get_layers()}
    checked = 0
    for layer in graph.layers:
        hname = export.hls_name[layer.name]
        hl = model_layers[hname]
        result_name = hl.get_output_variable().type.name
        assert FixedType.parse(types[result_name]) == layer.out_type, layer.name
        checked += 1
        if isinstance(layer, Dense | Conv):
            assert FixedType.parse(types[f"{hname}_accum_t"]) == layer.acc_type
            assert FixedType.parse(types[f"{hname}_weight_t"]) == layer.weight_type
            assert FixedType.parse(types[f"{hname}_bias_t"]) == layer.bias_type
            checked += 3
    assert checked >= len(graph.layers) + 12
    # hls4ml's own default never reaches a layer's data path
    assert "ap_fixed<16,6>" not in types.values()


def _axi_types(prj) -> dict[str, str]:
    axi = (prj / "firmware" / "qnet_axi.h").read_text()
    return {m.group(2): m.group(1) for m in re.finditer(r"typedef\s+(.+?)\s+(T_in|T_out)\s*;", axi)}


@pytest.mark.parametrize("make", [make_mlp, make_convnet], ids=["mlp", "convnet"])
def test_input_port_and_axi_wrapper_types_are_the_graph_types(tmp_path, make) -> None:
    graph = make(4) if make is make_mlp else make(2, 4)
    export = to_hls4ml(graph, board="pynq-z2", output_dir=tmp_path / "prj")
    assert export.backend == "VivadoAccelerator"
    types = _typedefs(tmp_path / "prj" / "firmware" / "defines.h")
    assert FixedType.parse(types["input_t"]) == graph.input_type
    axi = _axi_types(tmp_path / "prj")
    assert axi == {
        "T_in": "ap_ufixed<8,0,AP_RND_CONV,AP_SAT>",
        "T_out": "ap_fixed<8,5,AP_RND_CONV,AP_SAT>",
    }
    assert FixedType.parse(axi["T_in"]) == graph.input_type
    assert FixedType.parse(axi["T_out"]) == graph.output_type
    # hls4ml's own write (as compile()/build() call it) keeps them
    (tmp_path / "prj" / "firmware" / "qnet_axi.h").unlink()
    export.hls_model.write()
    assert _axi_types(tmp_path / "prj") == axi
    assert export.part == "xc7z020clg400-1"
    assert export.clock_period_ns == 10.0


def test_invalid_reuse_factor_names_layer_and_valid_values(tmp_path) -> None:
    graph = make_mlp(4, n_in=64, hidden=(32, 16))
    with pytest.raises(
        ConfigError,
        match=r"reuse factor 3 is not valid for layer 'fc0' .*valid reuse factors: 1, 2, 4",
    ):
        to_hls4ml(graph, output_dir=tmp_path / "prj", reuse_factor=3, write=False)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("io_type", "io_serial"),
        ("strategy", "Fast"),
        ("reuse_factor", 0),
        ("clock_period_ns", -1.0),
    ],
)
def test_bad_options_are_config_errors(tmp_path, option: str, value) -> None:
    # the message names the option ("reuse factor" in words, as BuildOptions spells it)
    pattern = option.replace("_", "[_ ]") if option != "clock_period_ns" else "clock"
    with pytest.raises(ConfigError, match=pattern):
        to_hls4ml(make_mlp(2), output_dir=tmp_path / "prj", write=False, **{option: value})


def test_board_without_hls4ml_is_refused(tmp_path) -> None:
    with pytest.raises(BoardError, match="icebreaker"):
        to_hls4ml(make_mlp(2), board="icebreaker", output_dir=tmp_path / "prj", write=False)


def test_override_of_unknown_layer_or_variable(tmp_path) -> None:
    graph = make_mlp(2)
    with pytest.raises(ConfigError, match="nope"):
        to_hls4ml(
            graph,
            output_dir=tmp_path / "p",
            write=False,
            precision_overrides={"nope": {"accum": "fixed<8,4>"}},
        )
    with pytest.raises(ConfigError, match="no 'accum' precision"):
        to_hls4ml(
            graph,
            output_dir=tmp_path / "p",
            write=False,
            precision_overrides={"relu0": {"accum": "fixed<8,4>"}},
        )


def test_duplicate_handler_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_hls_handler("dense")(lambda layer, graph, ctx: None)


def test_tb_data_is_the_simulator_output_in_channels_last_order(tmp_path) -> None:
    graph = make_convnet(2, 4)
    x = random_inputs(graph, 7)
    export = to_hls4ml(graph, board="kv260", output_dir=tmp_path / "prj", tb_input=x)
    tb = tmp_path / "prj" / "tb_data"
    xin = np.loadtxt(tb / "tb_input_features.dat", ndmin=2)
    yout = np.loadtxt(tb / "tb_output_predictions.dat", ndmin=2)
    xq = graph.input_type.quantize(x)
    np.testing.assert_array_equal(xin, np.moveaxis(xq, 1, -1).reshape(7, -1))
    np.testing.assert_array_equal(yout, simulate(graph, x))
    assert export.io_type == "io_parallel"


@pytest.mark.csim
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml C simulation")
def test_hand_built_convnet1d_trace_matches_simulator_every_layer(tmp_path) -> None:
    """Vitis backend, io_stream, per-layer reuse factors: every traced layer equals the simulator."""
    graph = make_convnet(1, 3, size=12)
    export = to_hls4ml(
        graph,
        board="zcu104",
        output_dir=tmp_path / "prj",
        io_type="io_stream",
        reuse_factor={"conv2": 2, "fc2": 2},
    )
    assert export.backend == "Vitis"
    export.compile()
    x = random_inputs(graph, 500)
    np.testing.assert_array_equal(export.predict(x), simulate(graph, x))
    hls = export.trace(x[:50])
    sim = simulate(graph, x[:50], trace=True)
    compared = [name for name in hls if name != graph.input.name]
    assert {"conv1", "relu1", "pool1", "conv2", "fc1", "fc2"} <= set(compared)
    for name in compared:
        np.testing.assert_array_equal(hls[name], sim[name], err_msg=name)


@pytest.mark.csim
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml C simulation")
def test_avgpool_csim_matches_simulator(tmp_path) -> None:
    """AvgPool2d 2x2 and 2x4 (overlapping), each mean rounded by the final cast, exactly."""
    conv = make_convnet(2, 4, size=12)
    layers = [layer for layer in conv.layers if layer.name in ("inp", "conv1", "relu1")]
    a_t = act_type(4)
    out_t = FixedType(6, 2, signed=False, rounding=Rounding.RND_CONV, overflow=Overflow.SAT)
    layers += [
        AvgPool("avg2", ("relu1",), (4, 6, 6), a_t, kernel=(2, 2), stride=(2, 2)),
        AvgPool("avg3", ("avg2",), (4, 3, 2), out_t, kernel=(2, 4), stride=(2, 2)),
        ReLU("out", ("avg3",), (4, 3, 2), out_t),
    ]
    graph = HwGraph(tuple(layers))
    export = to_hls4ml(graph, board="kv260", output_dir=tmp_path / "prj")
    x = random_inputs(graph, 500)
    hls = export.trace(x)  # builds the C simulation once, with tracing
    sim = simulate(graph, x, trace=True)
    for name in ("relu1", "avg2", "avg3", "out"):
        np.testing.assert_array_equal(hls[name], sim[name], err_msg=name)
    # the averages are not all on the coarser grid: the rounding of the last cast is exercised
    mean = sim["relu1"].reshape(500, 4, 6, 2, 6, 2).mean(axis=(3, 5))
    assert np.any(mean != sim["avg2"])
    assert np.abs(mean - sim["avg2"]).max() <= a_t.step / 2


def _parse_axi_log(path, step: float) -> np.ndarray:
    """hls4ml's wrapper test bench prints ``{ data: v, last: b }`` (6 significant digits):
    snap back to the output grid (the print error is far below half a step)."""
    values = np.array(
        [float(v) for v in re.findall(r"data:\s*([-+0-9.eE]+)", path.read_text())], dtype=np.float64
    )
    return np.round(values / step) * step


@pytest.mark.csim
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml C simulation")
def test_lstmnet_pynq_z2_csim_and_axi_wrapper_match_simulator(tmp_path) -> None:
    """LSTMNet on the VivadoAccelerator backend: the AXI wrapper carries the graph's types,
    builds (compile() builds qnet_axi.cpp too), and hls4ml's wrapper test bench (AXI structs,
    T_in/T_out casts) and the C simulation both equal the simulator on 200 sequences."""
    import subprocess
    import warnings

    torch = pytest.importorskip("torch")
    import qnet
    from qnet.models import build_model
    from qnet.models.config import ModelConfig

    torch.manual_seed(0)
    model = build_model(
        ModelConfig(kind="lstm", in_shape=(8, 8), num_classes=10, hidden=(32,))
    ).eval()
    graph = qnet.lower(model, torch.zeros(1, 8, 8))
    x = np.random.default_rng(4).uniform(-0.3, 1.3, size=(200, 8, 8))
    prj = tmp_path / "prj"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export = to_hls4ml(graph, board="pynq-z2", output_dir=prj, tb_input=x)
        export.compile()
    assert _axi_types(prj) == {
        "T_in": graph.input_type.ap_str(),
        "T_out": graph.output_type.ap_str(),
    }
    sim = simulate(graph, x)
    hls = export.predict(x)
    np.testing.assert_array_equal(hls, sim)
    assert np.unique(sim).size > 20

    build = subprocess.run(
        ["g++", "-O1", "-std=c++11", "-Ifirmware/ap_types", "-Ifirmware",
         '-DWEIGHTS_DIR="firmware/weights"', "qnet_test.cpp", "firmware/qnet.cpp",
         "firmware/qnet_axi.cpp", "-o", "axi_tb"],
        cwd=prj, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run(["./axi_tb"], cwd=prj, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    axi = _parse_axi_log(prj / "tb_data" / "csim_results.log", graph.output_type.step)
    np.testing.assert_array_equal(axi.reshape(200, -1), sim.reshape(200, -1))
