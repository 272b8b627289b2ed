"""Fixed-point (power-of-two scale, zero point 0) quantisers shared by every zoo model.

Every quantiser here is one of Brevitas' ``*FixedPoint`` quantisers with its bit width
overridden, so each tensor of a trained model is an exact fixed-point number the hardware can
reproduce. Runtime-statistics quantisers collect statistics for :data:`COLLECT_STATS_STEPS`
training steps, then learn their (power-of-two) scale.
"""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    import brevitas  # noqa: F401
    from brevitas.core.scaling import ScalingImplType
    from brevitas.quant import (
        Int8WeightPerTensorFixedPoint,
        Int16Bias,
        Uint8ActPerTensorFixedPoint,
        Uint8ActPerTensorFixedPointMaxInit,
    )
    from brevitas.quant.fixed_point import Int8ActPerTensorFixedPointMinMaxInit

__all__ = [
    "COLLECT_STATS_STEPS",
    "weight_quant",
    "bias_quant",
    "input_quant",
    "relu_quant",
    "signed_range_quant",
    "unsigned_range_quant",
    "quant_linear",
    "stats_shape",
    "register_standardization",
    "make_input_quant",
    "make_relu",
    "make_linear",
    "make_conv",
]

#: Training steps during which activation quantisers collect statistics before learning.
COLLECT_STATS_STEPS = 30


def weight_quant(bits: int) -> Any:
    """Signed narrow-range per-tensor weights, scale = smallest power of two covering max|w|."""
    return Int8WeightPerTensorFixedPoint.let(bit_width=bits)


def bias_quant() -> Any:
    """16-bit signed bias at scale input_scale * weight_scale (exact, needs a QuantTensor input)."""
    return Int16Bias


def input_quant(bits: int, signed: bool = False, limit: float = 1.0) -> Any:
    """Input quantiser with a constant power-of-two scale.

    Unsigned (default): ``[0, limit)``, scale ``limit * 2**-bits``; inputs normalised to
    [0, 1] (digits: pixel / 16) saturate 1.0 to ``1 - 2**-bits``, which keeps every value of a
    k/16 grid exact down to 4 bits but one. Signed: ``[-limit, limit)``, scale
    ``limit * 2**-(bits - 1)``, for standardised inputs (``limit`` is chosen from the
    training data by :mod:`qnet.data`).
    """
    if signed:
        return Int8ActPerTensorFixedPointMinMaxInit.let(
            bit_width=bits,
            min_val=-limit,
            max_val=limit,
            scaling_impl_type=ScalingImplType.CONST,
            scaling_const=limit,
        )
    return Uint8ActPerTensorFixedPointMaxInit.let(
        bit_width=bits,
        max_val=limit,
        scaling_impl_type=ScalingImplType.CONST,
        scaling_const=limit,
    )


def relu_quant(bits: int) -> Any:
    """Unsigned activations after ReLU, power-of-two scale from statistics then learned."""
    return Uint8ActPerTensorFixedPoint.let(bit_width=bits, collect_stats_steps=COLLECT_STATS_STEPS)


def signed_range_quant(bits: int, limit: float) -> Any:
    """Signed fixed point covering [-limit, limit) (limit a power of two), scale learned."""
    return Int8ActPerTensorFixedPointMinMaxInit.let(bit_width=bits, min_val=-limit, max_val=limit)


def unsigned_range_quant(bits: int, limit: float) -> Any:
    """Unsigned fixed point covering [0, limit) (limit a power of two), scale learned."""
    return Uint8ActPerTensorFixedPointMaxInit.let(bit_width=bits, max_val=limit)


def quant_linear(in_features: int, out_features: int, w_bits: int) -> Any:
    """The zoo's QuantLinear: fixed-point weights, a quantised bias, a plain float output
    (the exact accumulator; the next QuantReLU requantises it)."""
    from brevitas.nn import QuantLinear

    return QuantLinear(
        in_features,
        out_features,
        bias=True,
        weight_quant=weight_quant(w_bits),
        bias_quant=bias_quant(),
        return_quant_tensor=False,
    )


# ------------------------------------------------------------------ per-config layer builders
# Each returns the quantised layer, or its plain float torch twin when ``config.quantize`` is
# False (the float baseline: same architecture, no quantisers).


def stats_shape(config: Any) -> tuple[int, ...]:
    """Shape of the ``mean``/``std`` buffers: per channel (convnets), per feature (lstm, mlp),
    broadcastable against a batch ``(N, *in_shape)``."""
    shape = [1] * len(config.in_shape)
    axis = len(shape) - 1 if config.kind == "lstm" else 0
    shape[axis] = config.in_shape[axis]
    return tuple(shape)


def register_standardization(module: Any, config: Any) -> None:
    """Give ``module`` float32 buffers ``mean`` (zeros) and ``std`` (ones) when
    ``config.standardize``; :func:`qnet.train.train` fills them from the training split and
    they are saved with the model's state."""
    import torch

    if config.standardize:
        shape = stats_shape(config)
        module.register_buffer("mean", torch.zeros(shape, dtype=torch.float32))
        module.register_buffer("std", torch.ones(shape, dtype=torch.float32))


def make_input_quant(config: Any) -> Any:
    """The model's first quantiser (a QuantIdentity returning a QuantTensor)."""
    from brevitas.nn import QuantIdentity
    from torch import nn

    if not config.quantize:
        return nn.Identity()
    return QuantIdentity(
        input_quant(config.in_bits, config.in_signed, config.in_range), return_quant_tensor=True
    )


def make_relu(config: Any, bits: int | None = None) -> Any:
    """QuantReLU with ``a_bits`` (or a float ReLU)."""
    from brevitas.nn import QuantReLU
    from torch import nn

    if not config.quantize:
        return nn.ReLU()
    return QuantReLU(relu_quant(config.a_bits if bits is None else bits), return_quant_tensor=True)


def make_linear(in_features: int, out_features: int, config: Any, bits: int | None = None) -> Any:
    """:func:`quant_linear` with ``w_bits`` (or a float Linear)."""
    from torch import nn

    if not config.quantize:
        return nn.Linear(in_features, out_features)
    return quant_linear(in_features, out_features, config.w_bits if bits is None else bits)


def make_conv(
    dims: int,
    in_ch: int,
    out_ch: int,
    kernel: int,
    padding: int,
    config: Any,
    bits: int | None = None,
) -> Any:
    """Fixed-point QuantConv1d/2d with a quantised bias (or a float Conv)."""
    from brevitas.nn import QuantConv1d, QuantConv2d
    from torch import nn

    if not config.quantize:
        return (nn.Conv2d if dims == 2 else nn.Conv1d)(in_ch, out_ch, kernel, padding=padding)
    return (QuantConv2d if dims == 2 else QuantConv1d)(
        in_ch,
        out_ch,
        kernel,
        padding=padding,
        bias=True,
        weight_quant=weight_quant(config.w_bits if bits is None else bits),
        bias_quant=bias_quant(),
        return_quant_tensor=False,
    )
