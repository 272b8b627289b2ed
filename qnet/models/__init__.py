"""The qnet model zoo: Brevitas models with fixed-point (power-of-two) quantisers.

``build_model(config)`` turns a :class:`ModelConfig` into a model; forward takes a float
tensor (N, *config.in_shape) and returns float logits (N, num_classes).
"""

from __future__ import annotations

import warnings
from typing import Any

from qnet.models.config import MAX_BITS, MIN_BITS, MODEL_KINDS, USER_KIND, ModelConfig

__all__ = [
    "ModelConfig",
    "MODEL_KINDS",
    "USER_KIND",
    "MIN_BITS",
    "MAX_BITS",
    "build_model",
    "ConvNet2d",
    "ConvNet1d",
    "LSTMNet",
    "MLP",
]

_CLASSES = {"convnet2d": "ConvNet2d", "convnet1d": "ConvNet1d", "lstm": "LSTMNet", "mlp": "MLP"}
_MODULES = {"ConvNet2d": "convnet", "ConvNet1d": "convnet", "LSTMNet": "lstm", "MLP": "mlp"}


def __getattr__(name: str) -> Any:
    # Classes import brevitas; load them lazily so ModelConfig stays light.
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'qnet.models' has no attribute {name!r}")
    import importlib

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        return getattr(importlib.import_module(f"qnet.models.{module}"), name)


def build_model(config: ModelConfig) -> Any:
    """Build the Brevitas model described by ``config`` (in training mode, fresh weights).

    Parameters
    ----------
    config : ModelConfig
        Kind, input shape, classes and bit widths. Kind ``user`` calls the user's
        ``config.source`` (``file.py:function``) and checks what it returns
        (:func:`qnet.models.user.build_user_model`).

    Returns
    -------
    torch.nn.Module
        ``ConvNet2d``, ``ConvNet1d``, ``LSTMNet``, ``MLP`` or the user's model.
    """
    if config.kind == USER_KIND:
        from qnet.models.user import build_user_model

        return build_user_model(config)
    cls = __getattr__(_CLASSES[config.kind])
    return cls(config)
