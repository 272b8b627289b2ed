"""hls4ml C simulation of the LSTM == simulator == Brevitas, bit for bit."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("hls4ml")

import qnet  # noqa: E402
from qnet.hw.lstm import LSTM  # noqa: E402
from qnet.models.config import ModelConfig  # noqa: E402
from qnet.models.lstm import LSTMNet  # noqa: E402

pytestmark = [
    pytest.mark.csim,
    pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed"),
]

T, F, H = 6, 4, 8


def _model() -> LSTMNet:
    torch.manual_seed(7)
    cfg = ModelConfig(kind="lstm", in_shape=(T, F), num_classes=3, w_bits=4, a_bits=4, hidden=(H,))
    model = LSTMNet(cfg)
    with torch.no_grad():
        for name, p in model.lstm.named_parameters():
            if name.endswith("weight"):
                p.mul_(8.0)
    return model.eval()


@pytest.fixture(scope="module")
def lstm_export(tmp_path_factory):
    from qnet.export.hls import to_hls4ml

    model = _model()
    graph = qnet.lower(model, torch.zeros(1, T, F))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export = to_hls4ml(graph, "kv260", tmp_path_factory.mktemp("hls_lstm") / "prj")
        export.compile()
    return model, graph, export


def test_csim_equals_simulator_and_brevitas(lstm_export) -> None:
    model, graph, export = lstm_export
    g = torch.Generator().manual_seed(11)
    x = torch.rand(240, T, F, generator=g) * 3.0 - 1.0  # in and far outside [0, 1]
    with torch.no_grad():
        brevitas = model(x).double().numpy()
    sim = qnet.simulate(graph, x.numpy(), trace=True)
    hls = export.trace(x.numpy())
    lstm = next(layer for layer in graph.layers if isinstance(layer, LSTM))
    np.testing.assert_array_equal(hls[lstm.name], sim[lstm.name])
    np.testing.assert_array_equal(hls[graph.output.name], sim[graph.output.name])
    np.testing.assert_array_equal(sim[graph.output.name], brevitas)


def test_io_stream_is_refused(tmp_path) -> None:
    from qnet.errors import UnsupportedLayerError
    from qnet.export.hls import to_hls4ml

    graph = qnet.lower(_model(), torch.zeros(1, T, F))
    with pytest.raises(UnsupportedLayerError, match="io_parallel"):
        to_hls4ml(graph, "pynq-z2", tmp_path / "prj", io_type="io_stream", write=False)
