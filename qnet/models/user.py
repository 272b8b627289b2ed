"""A user's own Brevitas model in ``qnet train``: ``--model file.py:function``.

``function()`` returns ``(model, example_input)`` exactly as every other command accepts
(:mod:`qnet.sources`). :func:`user_model_config` describes it in a :class:`ModelConfig` of kind
``user`` (the checkpoint stores the source and rebuilds the model by calling the function
again); :func:`build_user_model` calls the function, checks what it returns (a
``torch.nn.Module`` holding Brevitas quantised layers, an example input of the configured shape)
and, when the data are standardised, wraps it in :class:`Standardized`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from qnet.errors import ConfigError
from qnet.models._quant import register_standardization
from qnet.models.config import USER_KIND, ModelConfig

__all__ = ["Standardized", "user_model_config", "build_user_model", "check_outputs"]


class Standardized(nn.Module):
    """``model((x - mean) / std)``: a user's model with the data set's standardisation in
    front of it (float32 buffers, saved with the model; part of the model like the zoo's)."""

    def __init__(self, model: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        register_standardization(self, config)
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        """Standardise, then the user's forward."""
        return self.model((x - self.mean) / self.std)


def _absolute(spec: str) -> str:
    file_text, _, func = str(spec).rpartition(":")
    return f"{Path(file_text).resolve()}:{func}"


def _call(spec: str) -> tuple[nn.Module, torch.Tensor]:
    from qnet.sources import is_user_model_spec, load_model

    if not is_user_model_spec(spec):
        raise ConfigError(f"--model {spec!r}: a user model is given as path/to/file.py:function")
    source = load_model(spec)  # checks the return value: (torch.nn.Module, torch.Tensor)
    model, example = source.model, source.example_input
    _require_brevitas(spec, model)
    if example.ndim < 2 or example.shape[0] < 1:
        raise ConfigError(
            f"{spec}: the example input has shape {tuple(example.shape)}; expected "
            "(1, *input shape) with a batch dimension"
        )
    model.train()
    return model, example


def _require_brevitas(spec: str, model: nn.Module) -> None:
    from brevitas.nn.mixin.base import QuantLayerMixin
    from brevitas.proxy.quant_proxy import QuantProxyFromInjector

    if not any(isinstance(m, QuantLayerMixin | QuantProxyFromInjector) for m in model.modules()):
        raise ConfigError(
            f"{spec}: returned a {type(model).__name__} with no Brevitas quantised layer; "
            "qnet train trains Brevitas models (brevitas.nn.QuantIdentity, QuantLinear, "
            "QuantConv2d, ...), so the hardware can be built from their quantisers"
        )


def user_model_config(
    spec: str, num_classes: int, *, standardize: bool = False
) -> tuple[ModelConfig, tuple[int, ...]]:
    """A ``user`` :class:`ModelConfig` for ``file.py:function`` (the source stored with an
    absolute path) and the per-sample input shape of its example input."""
    _, example = _call(spec)
    in_shape = tuple(int(v) for v in example.shape[1:])
    config = ModelConfig(
        kind=USER_KIND,
        in_shape=in_shape,
        num_classes=num_classes,
        standardize=standardize,
        source=_absolute(spec),
    )
    return config, in_shape


def build_user_model(config: ModelConfig) -> nn.Module:
    """Call the user's function; check the model and example shape; standardise if asked;
    with ``config.quantize`` False, turn every Brevitas quantiser off (float baseline)."""
    model, example = _call(config.source)
    got = tuple(int(v) for v in example.shape[1:])
    if got != tuple(config.in_shape):
        raise ConfigError(
            f"{config.source}: the example input now has per-sample shape {got}, but the model "
            f"was configured (trained) with {tuple(config.in_shape)}"
        )
    check_outputs(config.source, model, example, config.num_classes)
    if not config.quantize:
        _disable_quantisers(model)
    if config.standardize:
        return Standardized(model, config)
    return model


def check_outputs(spec: str, model: nn.Module, example: torch.Tensor, num_classes: int) -> None:
    """The model maps the example input to logits of shape (batch, num_classes)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example)
    except Exception as exc:  # a user's forward can raise anything
        raise ConfigError(
            f"{spec}: the model's forward on its example input {tuple(example.shape)} raised "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        ) from exc
    finally:
        model.train(was_training)
    value = getattr(out, "value", out)
    if not isinstance(value, torch.Tensor):
        raise ConfigError(
            f"{spec}: the model returned a {type(out).__name__}; qnet train needs logits, a "
            f"tensor of shape (batch, {num_classes})"
        )
    want = (example.shape[0], num_classes)
    if tuple(value.shape) != want:
        raise ConfigError(
            f"{spec}: the model returns shape {tuple(value.shape)} for an example input of "
            f"shape {tuple(example.shape)}; qnet train needs logits of shape {want} "
            f"({num_classes} classes in the data)"
        )


def _disable_quantisers(model: nn.Module) -> None:
    """Every Brevitas quantiser proxy passes its input through; layers return plain tensors."""
    from brevitas.graph.calibrate import QuantizationStatusManager
    from brevitas.proxy.quant_proxy import QuantProxyFromInjector

    for module in model.modules():
        if isinstance(module, QuantProxyFromInjector):
            module.disable_quant = True
    QuantizationStatusManager.disable_return_quant_tensor(model)
