"""QuantLSTM lowering: simulator == Brevitas, bit for bit, and clear errors otherwise."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from brevitas.nn import QuantIdentity, QuantLSTM
    from brevitas.quant import Int8ActPerTensorFloatMinMaxInit

import qnet  # noqa: E402
from qnet.errors import UnsupportedLayerError  # noqa: E402
from qnet.hw.lstm import LSTM  # noqa: E402
from qnet.models._quant import (  # noqa: E402
    bias_quant,
    input_quant,
    signed_range_quant,
    unsigned_range_quant,
    weight_quant,
)
from qnet.models.config import ModelConfig  # noqa: E402
from qnet.models.lstm import LSTMNet  # noqa: E402

T, F, H = 8, 5, 12
#: A quantiser with a scale that is not a power of two (3 / 127).
_FLOAT_SCALE = Int8ActPerTensorFloatMinMaxInit.let(min_val=-3.0, max_val=3.0)


def _inputs(n: int, seed: int) -> torch.Tensor:
    """Inputs in and far outside the training range [0, 1] (saturation), plus exact grid ties."""
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.rand(n, T, F, generator=g) * 3.0 - 1.0
    ties = (torch.randint(0, 512, (n // 4, T, F), generator=g).float() + 0.5) / 512
    x[: n // 4] = ties
    return x


def _train_briefly(model: torch.nn.Module, seed: int, steps: int = 4) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(steps):
        x = torch.rand(16, T, F, generator=g)
        y = (x[:, :, 0].sum(1) > T / 2).long()
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out, y % out.shape[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _lstmnet(w_bits: int, a_bits: int, seed: int, trained: bool, requant: bool = False) -> LSTMNet:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        kind="lstm",
        in_shape=(T, F),
        num_classes=3,
        w_bits=w_bits,
        a_bits=a_bits,
        hidden=(H,),
        lstm_requant_input=requant,
    )
    model = LSTMNet(cfg)
    with torch.no_grad():  # larger weights: gates saturate, tables are used end to end
        for name, p in model.lstm.named_parameters():
            if name.endswith("weight"):
                p.mul_(12.0)
    if trained:
        _train_briefly(model, seed)
    return model.eval()


# (w_bits, a_bits, seed, trained, requant): requant=True is the QuantLSTM requantising its
# input with io_quant (checkpoints written before lstm_requant_input), False the default
# (the input quantiser's output enters the cell as it is, io_quant quantises only h).
_CASES = [
    (2, 2, 0, False, False),
    (4, 4, 1, False, False),
    (8, 8, 0, False, False),
    (8, 4, 3, False, False),
    (2, 2, 1, True, False),
    (4, 4, 0, True, False),
    (8, 8, 1, True, False),
    (2, 8, 2, True, False),
    (4, 4, 1, False, True),
    (2, 2, 1, True, True),
    (4, 4, 0, True, True),
    (8, 8, 1, True, True),
]


@pytest.mark.parametrize("w_bits,a_bits,seed,trained,requant", _CASES)
def test_lstmnet_exact(w_bits: int, a_bits: int, seed: int, trained: bool, requant: bool) -> None:
    model = _lstmnet(w_bits, a_bits, seed, trained, requant)
    graph = qnet.lower(model, torch.zeros(1, T, F))
    assert any(isinstance(layer, LSTM) for layer in graph.layers)
    # the io_quant requantisation of the input is a hardware layer exactly when requant
    assert any(layer.name.endswith("io_quant") for layer in graph.layers) == requant
    x = _inputs(1000, seed)
    with torch.no_grad():
        want = model(x).double().numpy()
        seq = model.lstm(model.input_quant(x))[0].value.double().numpy()
    trace = qnet.simulate(graph, x.numpy(), trace=True)
    lstm = next(layer for layer in graph.layers if isinstance(layer, LSTM))
    # The LSTM's last hidden state and the logits, both exactly equal.
    np.testing.assert_array_equal(trace[lstm.name], seq[:, -1])
    np.testing.assert_array_equal(trace[graph.output.name], want)


class _SeqModel(torch.nn.Module):
    """QuantIdentity -> QuantLSTM, returning the full output sequence."""

    def __init__(self, **lstm_kwargs) -> None:
        super().__init__()
        self.inp = QuantIdentity(input_quant(8), return_quant_tensor=True)
        kwargs = dict(
            input_size=F,
            hidden_size=H,
            batch_first=True,
            weight_quant=weight_quant(4),
            bias_quant=bias_quant(),
            io_quant=signed_range_quant(4, 1.0),
            gate_acc_quant=signed_range_quant(8, 8.0),
            sigmoid_quant=unsigned_range_quant(8, 1.0),
            tanh_quant=signed_range_quant(8, 1.0),
            cell_state_quant=signed_range_quant(8, 4.0),
            return_quant_tensor=True,
        )
        kwargs.update(lstm_kwargs)
        self.lstm = QuantLSTM(**kwargs)

    def forward(self, x):
        return self.lstm(self.inp(x))[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_full_sequence_exact(seed: int) -> None:
    torch.manual_seed(seed)
    model = _SeqModel(shared_intra_layer_gate_acc_quant=bool(seed)).eval()
    graph = qnet.lower(model, torch.zeros(1, T, F))
    assert graph.output.out_shape == (T, H)
    x = _inputs(1000, seed)
    with torch.no_grad():
        want = model(x).value.double().numpy()
    np.testing.assert_array_equal(qnet.simulate(graph, x.numpy()), want)


def test_no_bias_exact() -> None:
    torch.manual_seed(3)
    model = _SeqModel(bias=False).eval()
    graph = qnet.lower(model, torch.zeros(1, T, F))
    assert graph.output.bias is None
    x = _inputs(1000, 3)
    with torch.no_grad():
        want = model(x).value.double().numpy()
    np.testing.assert_array_equal(qnet.simulate(graph, x.numpy()), want)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"bidirectional": True}, "bidirectional"),
        ({"num_layers": 2}, "num_layers=2"),
        ({"coupled_input_forget_gates": True}, "coupled"),
        ({"gate_acc_quant": _FLOAT_SCALE}, "power of two"),
        ({"sigmoid_quant": _FLOAT_SCALE}, "power of two"),
    ],
)
def test_unsupported_configurations(kwargs, match) -> None:
    torch.manual_seed(0)
    model = _SeqModel(**kwargs).eval()
    with pytest.raises(UnsupportedLayerError, match=match) as info:
        qnet.lower(model, torch.zeros(1, T, F))
    assert "lstm" in str(info.value) and "QuantLSTM" in str(info.value)


def test_batch_first_false_is_refused() -> None:
    model = _SeqModel(batch_first=False).eval()
    with pytest.raises(UnsupportedLayerError, match="batch_first"):
        qnet.lower(model, torch.zeros(1, T, F))


def test_plain_tensor_slice_of_the_sequence_feeds_a_linear_exactly() -> None:
    """``fc(lstm_out.value[:, -1, :])``: a plain tensor sliced from the QuantTensor is still on
    the LSTM's grid, so the classifier lowers (and matches Brevitas) without re-wrapping it."""
    from brevitas.nn import QuantLinear

    class Last(_SeqModel):
        def __init__(self) -> None:
            super().__init__()
            self.fc = QuantLinear(H, 3, bias=False, weight_quant=weight_quant(4))

        def forward(self, x):
            return self.fc(self.lstm(self.inp(x))[0].value[:, -1, :])

    torch.manual_seed(4)
    model = Last().eval()
    graph = qnet.lower(model, torch.zeros(1, T, F))
    x = _inputs(300, 4)
    with torch.no_grad():
        want = model(x).double().numpy()
    np.testing.assert_array_equal(qnet.simulate(graph, x.numpy()), want)
