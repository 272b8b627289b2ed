"""Quantised LSTM sequence classifier.

Every quantiser of the Brevitas ``QuantLSTM`` cell is fixed point (power-of-two scale, zero
point 0), so the cell is integer arithmetic plus tables over 8-bit domains:

- weights: ``w_bits`` signed narrow per tensor (input and hidden weights of each gate have their
  own scale); biases 16-bit at scale input_scale * input_weight_scale;
- ``io_quant`` (the hidden state h; with ``config.lstm_requant_input`` also the LSTM input):
  ``a_bits`` signed, covering [-1, 1). By default the LSTM takes the model's input quantiser's
  output as it is (``in_bits`` over the data's range: Brevitas' ``quantize_output_only``);
- gate accumulators: 8-bit signed, covering [-8, 8) at init (scale 2**-4, learned);
- sigmoid outputs: 8-bit unsigned, [0, 1) (scale 2**-8, learned);
- tanh outputs: 8-bit signed, [-1, 1) (scale 2**-7, learned);
- cell state: 8-bit signed, [-4, 4) (scale 2**-5, learned), shared by the three roundings.

Read the actual scales from the eval-mode model: they are learned parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from brevitas.nn import QuantLSTM
from brevitas.quant_tensor import IntQuantTensor
from torch import nn

from qnet.errors import ConfigError
from qnet.models._quant import (
    bias_quant,
    make_input_quant,
    make_linear,
    register_standardization,
    signed_range_quant,
    unsigned_range_quant,
    weight_quant,
)
from qnet.models.config import ModelConfig

__all__ = ["LSTMNet", "GATE_BITS"]

#: Bit width of the gate accumulators, sigmoid/tanh outputs and the cell state.
GATE_BITS = 8


class LSTMNet(nn.Module):
    """QuantIdentity -> QuantLSTM (batch_first) -> QuantLinear on the last hidden state.

    Input (N, T, F) float; output (N, num_classes) float logits. ``config.hidden[0]`` is the
    LSTM hidden size.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.kind != "lstm":
            raise ConfigError(f"LSTMNet needs kind 'lstm', got {config.kind!r}")
        if len(config.in_shape) != 2:
            raise ConfigError(f"lstm needs in_shape (T, F), got {config.in_shape}")
        if len(config.hidden) != 1:
            raise ConfigError(f"lstm takes one hidden size, got hidden={config.hidden}")
        self.config = config
        hidden = config.hidden[0]
        register_standardization(self, config)
        self.input_quant = make_input_quant(config)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = make_linear(hidden, config.num_classes, config)
        if not config.quantize:
            self.lstm: nn.Module = nn.LSTM(
                config.in_shape[1], hidden, num_layers=1, batch_first=True, bias=True
            )
            return
        self.lstm = QuantLSTM(
            input_size=config.in_shape[1],
            hidden_size=hidden,
            num_layers=1,
            batch_first=True,
            bias=True,
            weight_quant=weight_quant(config.w_bits),
            bias_quant=bias_quant(),
            io_quant=signed_range_quant(config.a_bits, 1.0),
            gate_acc_quant=signed_range_quant(GATE_BITS, 8.0),
            sigmoid_quant=unsigned_range_quant(GATE_BITS, 1.0),
            tanh_quant=signed_range_quant(GATE_BITS, 1.0),
            cell_state_quant=signed_range_quant(GATE_BITS, 4.0),
            return_quant_tensor=True,
        )
        if not config.lstm_requant_input:
            # Brevitas' own mode for the layers after the first of a stack: the input is
            # already a fixed-point QuantTensor (here the model's input quantiser's), io_quant
            # quantises only h. QuantLSTM's constructor sets it only for layers > 0.
            self.lstm.layers[0][0].quantize_output_only = True

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``, after dropping Brevitas' lazily built fused cell.

        Brevitas builds ``_fast_cell`` (aliases of the cell's quantisers) at its first forward;
        its keys are then expected by ``load_state_dict`` but never written by ``state_dict``,
        so a model that has run Brevitas' forward could not load a state. It is rebuilt on the
        next forward.
        """
        if self.config.quantize:
            for direction in self.lstm.layers:
                for layer in direction:
                    layer._fast_cell = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    #: Train with :mod:`qnet.models._fast_lstm` (Brevitas' quantisers, scales computed once
    #: per forward); eval mode always runs Brevitas' own QuantLSTM forward.
    fast_training: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float input (N, T, F) -> float logits (N, num_classes)."""
        if self.config.standardize:
            x = (x - self.mean) / self.std
        if self.training and self.fast_training and self.config.quantize:
            from qnet.models._fast_lstm import fast_lstm_last_hidden, supports

            if supports(self.lstm):
                return self.fc(self.dropout(fast_lstm_last_hidden(self.lstm, self.input_quant(x))))
        outputs, _ = self.lstm(self.input_quant(x))
        if not self.config.quantize:
            return self.fc(self.dropout(outputs[:, -1, :]))
        # The last time step's hidden state, still a fixed-point QuantTensor (exact slice).
        last = IntQuantTensor(
            outputs.value[:, -1, :],
            outputs.scale,
            outputs.zero_point,
            outputs.bit_width,
            outputs.signed,
            outputs.training,
        )
        return self.fc(self.dropout(last))
