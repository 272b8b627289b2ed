"""Quantised multi-layer perceptron."""

from __future__ import annotations

import torch
from brevitas.nn import QuantIdentity, QuantReLU
from torch import nn

from qnet.errors import ConfigError
from qnet.models._quant import input_quant, quant_linear, relu_quant
from qnet.models.config import ModelConfig

__all__ = ["MLP"]


class MLP(nn.Module):
    """QuantIdentity -> [QuantLinear -> QuantReLU]* -> QuantLinear; input (N, F)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.kind != "mlp":
            raise ConfigError(f"MLP needs kind 'mlp', got {config.kind!r}")
        if len(config.in_shape) != 1:
            raise ConfigError(f"mlp needs in_shape (F,), got {config.in_shape}")
        self.config = config
        self.input_quant = QuantIdentity(input_quant(config.in_bits), return_quant_tensor=True)
        layers: list[nn.Module] = []
        width = config.in_shape[0]
        for index, hidden in enumerate(config.hidden):
            layers += [
                quant_linear(width, hidden, config.w_bits_at(index)),
                QuantReLU(relu_quant(config.a_bits_at(index)), return_quant_tensor=True),
            ]
            width = hidden
        layers.append(nn.Dropout(config.dropout))
        layers.append(quant_linear(width, config.num_classes, config.w_bits_at(len(config.hidden))))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float input (N, F) -> float logits (N, num_classes)."""
        return self.layers(self.input_quant(x))
