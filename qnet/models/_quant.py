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
]

#: Training steps during which activation quantisers collect statistics before learning.
COLLECT_STATS_STEPS = 30


def weight_quant(bits: int) -> Any:
    """Signed narrow-range per-tensor weights, scale = smallest power of two covering max|w|."""
    return Int8WeightPerTensorFixedPoint.let(bit_width=bits)


def bias_quant() -> Any:
    """16-bit signed bias at scale input_scale * weight_scale (exact, needs a QuantTensor input)."""
    return Int16Bias


def input_quant(bits: int) -> Any:
    """Unsigned input quantiser with the constant scale 2**-bits: [0, 1 - 2**-bits].

    Inputs are normalised to [0, 1] by :mod:`qnet.data`; 1.0 saturates to 1 - 2**-bits, which
    keeps every value of a k/16 grid (digits) exact down to 4 bits but one.
    """
    return Uint8ActPerTensorFixedPointMaxInit.let(
        bit_width=bits,
        max_val=1.0,
        scaling_impl_type=ScalingImplType.CONST,
        scaling_const=1.0,
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
