"""qnet.models: shapes, float outputs, fixed-point quantisers everywhere, bit-width limits."""

from __future__ import annotations

import math

import pytest
import torch

from qnet.errors import ConfigError
from qnet.models import MLP, ConvNet1d, ConvNet2d, LSTMNet, ModelConfig, build_model

CONFIGS = [
    ModelConfig("convnet2d", (1, 8, 8), 10, w_bits=4, a_bits=4),
    ModelConfig("convnet2d", (1, 8, 8), 10, w_bits=2, a_bits=3, batchnorm=True),
    ModelConfig("convnet1d", (8, 8), 10, w_bits=8, a_bits=8),
    ModelConfig("mlp", (64,), 10, w_bits=3, a_bits=5, hidden=(32, 16)),
    ModelConfig("lstm", (8, 8), 10, w_bits=4, a_bits=4, hidden=(12,)),
]


def _is_pow2(value: float) -> bool:
    return value > 0 and math.log2(value) == round(math.log2(value))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.kind)
def test_forward_returns_float_logits(config):
    torch.manual_seed(0)
    model = build_model(config)
    x = torch.rand(5, *config.in_shape)
    out = model(x)
    assert type(out) is torch.Tensor and out.shape == (5, 10)
    out.sum().backward()
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert type(y) is torch.Tensor and y.dtype == torch.float32 and y.shape == (5, 10)


def test_classes_match_kinds():
    assert isinstance(build_model(CONFIGS[0]), ConvNet2d)
    assert isinstance(build_model(CONFIGS[2]), ConvNet1d)
    assert isinstance(build_model(CONFIGS[3]), MLP)
    assert isinstance(build_model(CONFIGS[4]), LSTMNet)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.kind)
def test_every_quantiser_is_fixed_point(config):
    """Each weight/activation quantiser: power-of-two scale, zero point 0, configured width."""
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer

    torch.manual_seed(0)
    model = build_model(config)
    for _ in range(3):  # a few training steps so runtime statistics exist
        model(torch.rand(8, *config.in_shape))
    model.eval()
    seen = 0
    for name, module in model.named_modules():
        if isinstance(module, QuantWeightBiasInputOutputLayer):
            qw = module.quant_weight()
            assert _is_pow2(float(qw.scale.detach())), name
            assert float(qw.zero_point) == 0.0
            assert int(qw.bit_width) == config.w_bits
            seen += 1
    if config.kind != "lstm":
        assert (
            seen
            == len(config.channels) * (config.kind.startswith("convnet")) + len(config.hidden) + 1
        )
    # the input quantiser: unsigned, in_bits, constant scale 2**-in_bits
    q = model.input_quant(torch.rand(4, *config.in_shape))
    assert (
        float(q.scale) == 2.0**-config.in_bits
        and not q.signed
        and int(q.bit_width) == config.in_bits
    )


def test_lstm_cell_quantisers_fixed_point():
    config = CONFIGS[4]
    model = build_model(config).eval()
    layer = model.lstm.layers[0][0]
    cell = layer.cell
    expected = {
        "output_quant": (config.a_bits, True),
        "cell_state_quant": (8, True),
        "input_acc_quant": (8, True),
        "forget_acc_quant": (8, True),
        "cell_acc_quant": (8, True),
        "output_acc_quant": (8, True),
        "input_sigmoid_quant": (8, False),
        "forget_sigmoid_quant": (8, False),
        "output_sigmoid_quant": (8, False),
        "cell_tanh_quant": (8, True),
        "hidden_state_tanh_quant": (8, True),
    }
    for name, (bits, signed) in expected.items():
        proxy = getattr(cell, name)
        assert int(proxy.bit_width()) == bits, name
        assert bool(proxy.is_signed) == signed, name
        assert _is_pow2(float(proxy.scale())), name
        assert float(proxy.zero_point()) == 0.0, name
    for gate in ("input", "forget", "cell", "output"):
        params = getattr(layer, f"{gate}_gate_params")
        for w in (params.input_weight, params.hidden_weight):
            assert _is_pow2(float(w.quant_weight().scale))


@pytest.mark.parametrize("field", ["w_bits", "a_bits", "in_bits"])
@pytest.mark.parametrize("bits", [1, 9, 16])
def test_bit_widths_outside_2_8_refused(field, bits):
    with pytest.raises(ConfigError, match=field.replace("_", "-")):
        ModelConfig("convnet2d", (1, 8, 8), 10, **{field: bits})


def test_wrong_in_shape_rank_refused():
    with pytest.raises(ConfigError, match="in_shape"):
        build_model(ModelConfig("convnet2d", (8, 8), 10))
    with pytest.raises(ConfigError, match="one hidden size"):
        build_model(ModelConfig("lstm", (8, 8), 10, hidden=(8, 8)))


@pytest.mark.parametrize(
    "shape, hidden, bits, requant",
    [((40, 1), 16, 4, False), ((8, 8), 12, 8, False), ((6, 3), 5, 2, False), ((6, 3), 5, 4, True)],
)
def test_fast_lstm_training_forward_equals_brevitas(shape, hidden, bits, requant):
    """The faster QuantLSTM training forward gives Brevitas' values bit for bit and the same
    gradients (weights to float32 rounding; scales, sums with cancellation, to 1e-2 rel.),
    with the input entering the cell as it is (default) or requantised by io_quant."""
    from qnet.models._fast_lstm import supports

    config = ModelConfig(
        "lstm", shape, 10, w_bits=bits, a_bits=bits, hidden=(hidden,), dropout=0.0,
        lstm_requant_input=requant,
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config)
    assert supports(model.lstm)
    with torch.no_grad():  # learned scales off their initial powers of two, different per gate
        for name, p in model.named_parameters():
            if "scaling_impl.value" in name:
                p.add_(torch.randn_like(p) * 0.7)
    model.train()
    x = torch.randn(9, *shape) * 2
    grads = []
    outs = []
    for fast in (True, False):
        model.fast_training = fast
        model.zero_grad()
        out = model(x)
        (out * torch.linspace(-1, 1, 10)).sum().backward()
        outs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert torch.equal(outs[0], outs[1])
    assert grads[0].keys() == grads[1].keys()
    for name, want in grads[1].items():
        got = grads[0][name]
        tol = 1e-2 if "scaling_impl" in name else 1e-4
        assert float((got - want).abs().max()) <= tol * float(want.abs().max()) + 1e-7, name
    model.fast_training = True
    model.eval()  # eval mode always runs Brevitas' own forward
    with torch.no_grad():
        assert torch.equal(model(x), outs[1])


def test_lstm_config_written_before_lstm_requant_input_keeps_its_meaning():
    old = ModelConfig("lstm", (8, 1), 3).to_dict()
    del old["lstm_requant_input"]
    assert ModelConfig.from_dict(old).lstm_requant_input is True
    assert ModelConfig("lstm", (8, 1), 3).lstm_requant_input is False
    assert build_model(ModelConfig("lstm", (8, 1), 3)).lstm.layers[0][0].quantize_output_only


def test_fast_lstm_gate_by_gate_weights_when_not_shared(monkeypatch):
    """Weight quantisers the merged path does not cover go through Brevitas gate by gate:
    the same training forward either way, equal to Brevitas'."""
    import qnet.models._fast_lstm as fast

    config = ModelConfig("lstm", (7, 2), 4, w_bits=4, a_bits=4, hidden=(6,), dropout=0.0)
    torch.manual_seed(1)
    model = build_model(config)
    model.train()
    x = torch.randn(5, 7, 2) * 2
    merged = model(x)
    model.fast_training = False
    brevitas_out = model(x)
    model.fast_training = True
    monkeypatch.setattr(fast, "_shares_weight_scale", lambda gate: False)
    gate_by_gate = model(x)
    assert torch.equal(merged, brevitas_out) and torch.equal(gate_by_gate, brevitas_out)
