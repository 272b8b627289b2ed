"""QONNX export (Brevitas -> QONNX file) and qonnx execution against the qnet simulator.

The QONNX file must execute (qonnx ``execute_onnx``) to exactly the values of
``qnet.simulate(qnet.lower(model))`` and of Brevitas itself, on in-range inputs, saturating
inputs and exact ties of the input quantiser.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=UserWarning)
torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("qonnx")

import qnet  # noqa: E402
from qnet.errors import DataError, FormatError, UnsupportedLayerError  # noqa: E402
from qnet.export.qonnx import execute_qonnx, export_qonnx  # noqa: E402
from qnet.models import ModelConfig, build_model  # noqa: E402

# Two torch threads per pytest worker on 2 cores make Brevitas ~20x slower.
torch.set_num_threads(1)

N_PER_KIND = 40  # x 3 kinds of input = 120 samples per model (~5-15 ms each in qonnx)

ZOO = {
    "convnet2d": ("convnet2d", (1, 8, 8), {}),
    "convnet1d": ("convnet1d", (8, 8), {}),
    "mlp": ("mlp", (64,), {}),
    "convnet2d-bn": ("convnet2d", (1, 8, 8), {"channels": (4, 8), "batchnorm": True}),
}


def _trained(kind: str, in_shape: tuple[int, ...], extra: dict, seed: int = 0):
    """A zoo model after a few SGD steps on random data (activation scales calibrated)."""
    torch.manual_seed(seed)
    model = build_model(
        ModelConfig(kind=kind, in_shape=in_shape, num_classes=10, w_bits=4, a_bits=4, **extra)
    )
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((256, *in_shape), generator=gen)
    y = torch.randint(0, 10, (256,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(8):
        idx = slice(32 * step, 32 * step + 32)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


def _inputs(graph, in_shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """float32 inputs: in range, saturating (far outside the input type), exact ties."""
    rng = np.random.default_rng(seed)
    t = graph.input_type
    in_range = rng.uniform(t.min, t.max, (n, *in_shape))
    saturating = rng.choice([-1.0, 1.0], (n, *in_shape)) * rng.uniform(1.5, 20.0) * max(
        abs(t.min), abs(t.max), 1.0
    ) + rng.uniform(-1.0, 1.0, (n, *in_shape))
    # (k + 1/2) lsb of the input quantiser: half-way between two representable values.
    k = rng.integers(t.int_min, t.int_max, (n, *in_shape))
    ties = (k + 0.5) * t.step
    x = np.concatenate([in_range, saturating, ties]).astype(np.float32)
    assert np.array_equal(x[2 * n :].astype(np.float64), ties)  # ties survive float32
    return x


@pytest.fixture(scope="module", params=sorted(ZOO))
def exported(request, tmp_path_factory):
    kind, in_shape, extra = ZOO[request.param]
    model = _trained(kind, in_shape, extra)
    x0 = torch.zeros((1, *in_shape))
    graph = qnet.lower(model, x0)
    path = export_qonnx(model, x0, tmp_path_factory.mktemp("qonnx") / "model.onnx")
    return request.param, model, graph, path, in_shape


def test_qonnx_equals_simulator_and_brevitas(exported):
    name, model, graph, path, in_shape = exported
    x = _inputs(graph, in_shape, N_PER_KIND, seed=1)
    y_qonnx = execute_qonnx(path, x, quiet=True)
    y_sim = qnet.simulate(graph, x)
    with torch.no_grad():
        y_torch = model(torch.from_numpy(x))
    y_brevitas = getattr(y_torch, "value", y_torch).numpy().astype(np.float64)
    assert y_qonnx.dtype == np.float64
    assert y_qonnx.shape == y_sim.shape == (len(x), 10)
    # the saturating inputs really leave the input type's range
    assert np.abs(x[N_PER_KIND : 2 * N_PER_KIND]).max() > graph.input_type.max
    mismatches = int(np.sum(np.any(y_qonnx != y_sim, axis=1)))
    assert mismatches == 0, f"{name}: {mismatches}/{len(x)} samples differ from qnet.simulate"
    np.testing.assert_array_equal(y_qonnx, y_sim)
    np.testing.assert_array_equal(y_brevitas, y_sim)
    # outputs are not trivially constant: the comparison has something to compare
    assert len(np.unique(y_sim)) > 10


def test_qonnx_graph_is_channels_first_with_quant_nodes(exported):
    from qonnx.core.modelwrapper import ModelWrapper

    _, _, _, path, in_shape = exported
    wrapped = ModelWrapper(str(path))
    ops = [n.op_type for n in wrapped.graph.node]
    dims = tuple(d.dim_value for d in wrapped.graph.input[0].type.tensor_type.shape.dim)
    assert dims == (1, *in_shape)
    assert "Quant" in ops
    assert not any(op.startswith("QuantLSTM") for op in ops)


def test_bias_free_linear_exports_and_matches(tmp_path):
    # qonnx GemmToMatMul crashes on a Gemm without bias (PITFALLS); export must not need it.
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU

    from qnet.models._quant import input_quant, relu_quant, weight_quant

    torch.manual_seed(3)
    model = torch.nn.Sequential(
        QuantIdentity(input_quant(8), return_quant_tensor=True),
        QuantLinear(12, 8, bias=False, weight_quant=weight_quant(4)),
        QuantReLU(relu_quant(4), return_quant_tensor=True),
        QuantLinear(8, 3, bias=False, weight_quant=weight_quant(4)),
    )
    model.train()
    with torch.no_grad():
        model(torch.rand(64, 12))
    model.eval()
    x0 = torch.zeros((1, 12))
    graph = qnet.lower(model, x0)
    path = export_qonnx(model, x0, tmp_path / "nobias.onnx")
    x = _inputs(graph, (12,), 12, seed=5)
    np.testing.assert_array_equal(execute_qonnx(path, x, quiet=True), qnet.simulate(graph, x))


def test_lstm_is_refused_clearly_and_keeps_existing_file(tmp_path):
    model = build_model(ModelConfig(kind="lstm", in_shape=(6, 8), num_classes=10))
    model.eval()
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(UnsupportedLayerError) as info:
        export_qonnx(model, torch.zeros((1, 6, 8)), target)
    message = str(info.value)
    assert "QuantLSTM" in message and "qonnx" in message
    lstm_paths = [n for n, m in model.named_modules() if type(m).__name__ == "QuantLSTM"]
    assert lstm_paths and f"'{lstm_paths[0]}'" in message
    assert target.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]


def test_export_is_atomic_restores_mode_and_replaces(tmp_path):
    model = _trained("mlp", (16,), {"hidden": (8,)})
    model.train()
    target = tmp_path / "sub" / "m.onnx"
    target.parent.mkdir()
    target.write_bytes(b"old")
    out = export_qonnx(model, np.zeros((4, 16), dtype=np.float32), target)
    assert out == target and model.training
    assert sorted(os.listdir(target.parent)) == ["m.onnx"]
    assert target.stat().st_size > 100


def test_execute_checks_inputs_and_file(tmp_path, exported):
    _, _, _, path, in_shape = exported
    with pytest.raises(DataError, match="shape"):
        execute_qonnx(path, np.zeros((2, *in_shape, 1), dtype=np.float32), quiet=True)
    bad = np.zeros((2, *in_shape), dtype=np.float32)
    bad.flat[0] = np.nan
    with pytest.raises(DataError, match="finite"):
        execute_qonnx(path, bad, quiet=True)
    with pytest.raises(FormatError, match="does not exist"):
        execute_qonnx(tmp_path / "missing.onnx", bad, quiet=True)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    with pytest.raises(FormatError, match="junk.onnx"):
        execute_qonnx(junk, bad, quiet=True)
    assert execute_qonnx(path, bad[:0], quiet=True).shape == (0, 10)


def test_export_rejects_bad_arguments(tmp_path):
    with pytest.raises(FormatError, match="torch.nn.Module"):
        export_qonnx("not a model", torch.zeros((1, 4)), tmp_path / "x.onnx")
    model = _trained("mlp", (16,), {"hidden": (8,)})
    with pytest.raises(FormatError, match="exporter"):
        export_qonnx(model, torch.zeros((1, 16)), tmp_path / "x.onnx", exporter="nope")
    with pytest.raises(FormatError, match="example_input"):
        export_qonnx(model, torch.zeros(16), tmp_path / "x.onnx")
    assert os.listdir(tmp_path) == []


def test_floor_quantiser_exports_as_floor(tmp_path):
    # A quantiser built with .let(float_to_int_impl=FloorSte) keeps a stale
    # float_to_int_impl_type=ROUND in its injector, which Brevitas' QONNX export writes as the
    # Quant node's rounding_mode; before the fix every sample here differed.
    from brevitas import nn as qnn
    from brevitas.core.function_wrapper import FloorSte
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int16Bias
    from qonnx.core.modelwrapper import ModelWrapper

    torch.manual_seed(0)
    floor_quant = Int8ActPerTensorFixedPoint.let(bit_width=4, float_to_int_impl=FloorSte)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(Int8ActPerTensorFixedPoint.let(bit_width=5), return_quant_tensor=True),
        qnn.QuantLinear(
            15,
            6,
            bias=True,
            weight_quant=Int8WeightPerTensorFixedPoint.let(bit_width=4),
            bias_quant=Int16Bias,
        ),
        qnn.QuantIdentity(floor_quant, return_quant_tensor=True),
        qnn.QuantLinear(
            6, 3, bias=False, weight_quant=Int8WeightPerTensorFixedPoint.let(bit_width=4)
        ),
    )
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(64, 15) * 2 - 1)
    model.eval()
    x0 = torch.zeros((1, 15))
    graph = qnet.lower(model, x0)
    path = export_qonnx(model, x0, tmp_path / "floor.onnx")
    modes = [
        attr.s
        for node in ModelWrapper(str(path)).graph.node
        if node.op_type == "Quant"
        for attr in node.attribute
        if attr.name == "rounding_mode"
    ]
    assert modes.count(b"FLOOR") == 1
    # the model's own proxy still reports its original (stale) injector after export
    assert str(model[2].act_quant.rounding_mode).upper().endswith("ROUND")
    x = _inputs(graph, (15,), 20, seed=7)
    np.testing.assert_array_equal(execute_qonnx(path, x, quiet=True), qnet.simulate(graph, x))
