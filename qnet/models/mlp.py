"""Quantised multi-layer perceptron."""

from __future__ import annotations

import torch
from torch import nn

from qnet.errors import ConfigError
from qnet.models._quant import (
    make_input_quant,
    make_linear,
    make_relu,
    register_standardization,
)
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
        register_standardization(self, config)
        self.input_quant = make_input_quant(config)
        layers: list[nn.Module] = []
        width = config.in_shape[0]
        for index, hidden in enumerate(config.hidden):
            layers += [
                make_linear(width, hidden, config, config.w_bits_at(index)),
                make_relu(config, config.a_bits_at(index)),
            ]
            width = hidden
        layers.append(nn.Dropout(config.dropout))
        layers.append(
            make_linear(width, config.num_classes, config, config.w_bits_at(len(config.hidden)))
        )
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float input (N, F) -> float logits (N, num_classes)."""
        if self.config.standardize:
            x = (x - self.mean) / self.std
        return self.layers(self.input_quant(x))
