"""Brevitas' own FPGA example models (``brevitas_examples.bnn_pynq``, shipped in the brevitas
wheel), built with ``pretrained=False`` and randomised BatchNorm/TensorNorm statistics:
lowered with their host preprocessing (``view``, ``2 * x - 1``, the binary input quantiser's
sign) and float tail (TensorNorm), and simulated exactly equal to Brevitas."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", category=UserWarning)
from brevitas_examples.bnn_pynq.models import model_with_cfg  # noqa: E402

import qnet  # noqa: E402
from qnet.errors import UnsupportedLayerError  # noqa: E402
from qnet.hw.fixed import Overflow  # noqa: E402
from qnet.hw.graph import HwGraph, MultiThreshold  # noqa: E402

torch.set_num_threads(1)

FC = [
    "tfc_1w1a",
    "tfc_1w2a",
    "tfc_2w2a",
    "sfc_1w1a",
    "sfc_1w2a",
    "sfc_2w2a",
    "lfc_1w1a",
    "lfc_1w2a",
]
CNV = ["cnv_1w1a", "cnv_1w2a", "cnv_2w2a"]


def randomise_stats(model: torch.nn.Module, seed: int = 0) -> None:
    """Random BatchNorm / TensorNorm statistics and affine parameters (pretrained=False has
    identity statistics, which would hide most of the float math)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                n = m.num_features
            elif type(m).__name__ == "TensorNorm":
                n = 1
            else:
                continue
            m.running_mean.copy_(torch.randn(n, generator=g) * 2)
            m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.2)
            m.weight.copy_(torch.randn(n, generator=g))
            m.bias.copy_(torch.randn(n, generator=g))


def build(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    model, _ = model_with_cfg(name, pretrained=False)
    randomise_stats(model)
    model.eval()
    return model, ((1, 28, 28) if "fc" in name else (3, 32, 32))


def inputs(shape: tuple[int, ...], n: int = 200) -> np.ndarray:
    """Uniform [0, 1) inputs, plus inputs on the quantisers' ties after ``2 * x - 1``:
    x = k / 512 hits every tie of the 8-bit Q1.7 input quantiser (odd k), of the 2-bit one
    (x = 0.25, 0.75) and the binary sign's 0 (x = 0.5)."""
    rng = np.random.default_rng(0)
    x = rng.random((n, *shape)).astype(np.float32)
    k = rng.integers(0, 512, size=(n // 4, *shape))
    x[: n // 4] = (k / 512).astype(np.float32)
    x[n // 4 : n // 4 + 4] = np.float32(0.5)
    x[n // 4 + 4 : n // 4 + 8] = np.float32(0.25)
    return x


def brevitas(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    return getattr(out, "value", out).double().numpy()


def _check(name: str) -> None:
    model, shape = build(name)
    graph = qnet.lower(model, torch.zeros(1, *shape))
    ops = [op.op for op in graph.pre]
    assert ops[-2:] == ["mul", "sub"] or ops[-3:-1] == ["mul", "sub"], ops  # 2 * x - 1
    assert [op.op for op in graph.post] == ["sub", "div", "mul", "add"]  # TensorNorm
    assert any(isinstance(layer, MultiThreshold) for layer in graph.layers)
    x = inputs(shape)
    got = qnet.simulate(graph, x)
    want = brevitas(model, x)
    assert got.dtype == np.float64 and got.shape == want.shape
    assert np.array_equal(got, want), f"{name}: {(got != want).sum()} of {got.size} differ"


@pytest.mark.parametrize("name", FC)
def test_bnn_pynq_fc_simulator_equals_brevitas(name: str) -> None:
    _check(name)


@pytest.mark.parametrize(
    "name", [CNV[0]] + [pytest.param(n, marks=pytest.mark.slow) for n in CNV[1:]]
)
def test_bnn_pynq_cnv_simulator_equals_brevitas(name: str) -> None:
    _check(name)


def test_binary_input_quantiser_is_a_host_sign_and_a_two_level_port() -> None:
    model, shape = build("tfc_1w1a")
    graph = qnet.lower(model, torch.zeros(1, *shape))
    assert [op.op for op in graph.pre] == ["reshape", "mul", "sub", "sign"]
    t = graph.input_type
    assert (t.width, t.signed, t.overflow) == (2, True, Overflow.SAT_SYM)  # -1 and +1
    first = graph.layers[1]
    assert int(np.abs(first.weight).max()) == 1 and set(np.unique(first.weight)) <= {-1, 1}


def test_saved_graph_keeps_host_stages(tmp_path) -> None:  # noqa: ANN001
    model, shape = build("tfc_2w2a")
    graph = qnet.lower(model, torch.zeros(1, *shape))
    path = graph.save(tmp_path / "g.npz")
    back = HwGraph.load(path)
    assert [op.to_json() for op in back.pre] == [op.to_json() for op in graph.pre]
    assert [op.to_json() for op in back.post] == [op.to_json() for op in graph.post]
    x = inputs(shape, 40)
    assert np.array_equal(qnet.simulate(back, x), brevitas(model, x))
    text = back.summary()
    assert "host preprocessing" in text and "host postprocessing" in text and "hardware" in text


def test_resnet18_first_conv_on_float_input_says_how_to_fix() -> None:
    torch.manual_seed(0)
    model, _ = model_with_cfg("resnet18_4w4a", pretrained=False)
    model.eval()
    with pytest.raises(UnsupportedLayerError) as info:
        qnet.lower(model, torch.zeros(1, 3, 32, 32))
    msg = str(info.value)
    assert "conv1" in msg and "QuantConv2d" in msg and "QuantIdentity" in msg


@pytest.mark.slow
@pytest.mark.csim
def test_tfc_csim_and_rtl_equal_simulator_and_brevitas() -> None:
    """TFC (784-64-64-64-10, binary): hls4ml C simulation and the da4ml RTL (Verilator) run
    the hardware part; with the host stages around them all equal Brevitas exactly."""
    model, shape = build("tfc_1w1a")
    x = inputs(shape, 50)
    report = qnet.verify(model, x, rtl=True)
    assert report.all_exact, report.table()
    assert {r.name for r in report.executors if r.ran} >= {"brevitas", "simulator", "csim", "rtl"}


@pytest.mark.slow
@pytest.mark.csim
def test_cnv_csim_io_stream_equals_simulator_and_brevitas() -> None:
    model, shape = build("cnv_1w1a")
    x = inputs(shape, 20)
    report = qnet.verify(model, x, io_type="io_stream")
    assert report.all_exact, report.table()
    assert {r.name for r in report.executors if r.ran} >= {"brevitas", "simulator", "csim"}


USER_FILE = """
import torch
from brevitas_examples.bnn_pynq.models import model_with_cfg


def build():
    torch.manual_seed(0)
    model, _ = model_with_cfg("{name}", pretrained=False)
    return model, torch.zeros(1, {shape})
"""


def _qnet(*args: str, timeout: float = 3000) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    cmd = [sys.executable, "-c", "from qnet.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_inspect_user_file_shows_host_and_hardware_split(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "bnn.py"
    path.write_text(USER_FILE.format(name="tfc_1w1a", shape="1, 28, 28"))
    out = _qnet("inspect", f"{path}:build")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert (
        text.index("host preprocessing") < text.index("HwGraph") < text.index("host postprocessing")
    )
    assert "sign" in text and "multithreshold" in text


@pytest.mark.slow
@pytest.mark.csim
@pytest.mark.parametrize("name,shape", [("tfc_2w2a", "1, 28, 28"), ("cnv_1w1a", "3, 32, 32")])
def test_qnet_verify_user_file(tmp_path, name: str, shape: str) -> None:  # noqa: ANN001
    path = tmp_path / "bnn.py"
    path.write_text(USER_FILE.format(name=name, shape=shape))
    extra = ["--io-type", "io_stream"] if name.startswith("cnv") else []
    out = _qnet("verify", f"{path}:build", "--n", "20", *extra)
    assert out.returncode == 0, out.stdout + out.stderr
