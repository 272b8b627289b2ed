"""Quantised ConvNets: :class:`ConvNet2d` for images, :class:`ConvNet1d` for signals."""

from __future__ import annotations

import torch
from torch import nn

from qnet.errors import ConfigError
from qnet.models._quant import (
    make_conv,
    make_input_quant,
    make_linear,
    make_relu,
    register_standardization,
)
from qnet.models.config import ModelConfig

__all__ = ["ConvNet2d", "ConvNet1d"]


class _ConvNet(nn.Module):
    """N x [QuantConv -> (BatchNorm) -> QuantReLU -> MaxPool] -> Flatten -> dense head."""

    _dims: int = 2
    _kind: str = ""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.kind != self._kind:
            raise ConfigError(
                f"{type(self).__name__} needs kind {self._kind!r}, got {config.kind!r}"
            )
        if len(config.in_shape) != self._dims + 1:
            raise ConfigError(
                f"{self._kind} needs in_shape (C, {'H, W' if self._dims == 2 else 'L'}), "
                f"got {config.in_shape}"
            )
        self.config = config
        register_standardization(self, config)
        bn_cls = nn.BatchNorm2d if self._dims == 2 else nn.BatchNorm1d
        pool_cls = nn.MaxPool2d if self._dims == 2 else nn.MaxPool1d
        self.input_quant = make_input_quant(config)
        layers: list[nn.Module] = []
        in_ch = config.in_shape[0]
        spatial = list(config.in_shape[1:])
        pad = config.kernel_size // 2
        for index, out_ch in enumerate(config.channels):
            layers.append(
                make_conv(
                    self._dims, in_ch, out_ch, config.kernel_size, pad, config,
                    config.w_bits_at(index),
                )
            )  # fmt: skip
            if config.batchnorm:
                layers.append(bn_cls(out_ch))
            layers.append(make_relu(config, config.a_bits_at(index)))
            spatial = [s + 2 * pad - config.kernel_size + 1 for s in spatial]
            if min(spatial) >= 2:
                layers.append(pool_cls(2))
                spatial = [s // 2 for s in spatial]
            if min(spatial) < 1:
                raise ConfigError(
                    f"input {config.in_shape} is too small for {len(config.channels)} conv blocks"
                )
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        flat = in_ch * int(torch.tensor(spatial).prod())
        head: list[nn.Module] = []
        index = len(config.channels)
        for width in config.hidden:
            head += [
                make_linear(flat, width, config, config.w_bits_at(index)),
                make_relu(config, config.a_bits_at(index)),
            ]
            flat = width
            index += 1
        head.append(nn.Dropout(config.dropout))
        head.append(make_linear(flat, config.num_classes, config, config.w_bits_at(index)))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float input (N, *in_shape) -> float logits (N, num_classes)."""
        if self.config.standardize:
            x = (x - self.mean) / self.std
        x = self.input_quant(x)
        x = self.features(x)
        x = self.flatten(x)
        return self.classifier(x)


class ConvNet2d(_ConvNet):
    """2-D ConvNet for images (N, C, H, W); see :class:`ModelConfig` for the options."""

    _dims = 2
    _kind = "convnet2d"


class ConvNet1d(_ConvNet):
    """1-D ConvNet for signals (N, C, L); see :class:`ModelConfig` for the options."""

    _dims = 1
    _kind = "convnet1d"
