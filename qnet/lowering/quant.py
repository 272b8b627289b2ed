"""Brevitas quantiser -> :class:`~qnet.hw.fixed.FixedType`: the one set of helpers all handlers use.

Every helper takes ``where`` (the module or quantiser path used in messages, e.g.
``"module 'fc' (QuantLinear)"`` or ``"lstm.input_acc_quant"``) and an optional ``accepted``
(what would be accepted instead, appended to the :class:`UnsupportedLayerError`).

Accepted quantisers: power-of-two scale (per tensor; per channel along axis 0 for weights and
biases), zero point 0, rounding ROUND (half to even -> ``RND_CONV``), FLOOR (-> ``TRN``) or
ROUND_TO_ZERO (-> ``TRN_ZERO``), saturating (narrow signed -> ``SAT_SYM``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from qnet.errors import UnsupportedLayerError
from qnet.hw.fixed import FixedType, Overflow, Rounding

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from brevitas.quant_tensor import IntQuantTensor

__all__ = [
    "POW2_ACCEPTED",
    "quantiser_kind",
    "scale_fracs",
    "quantiser_rounding",
    "fixed_type_of",
    "proxy_type",
    "weight_mantissas",
    "acc_type_for",
    "acc_type_from_bound",
    "scale_values",
    "is_fixed_point_scale",
    "quant_format",
    "weight_ints",
]

#: What the helpers accept, for messages.
POW2_ACCEPTED = (
    "power-of-two scales (Brevitas *FixedPoint quantisers, restrict_scaling_type=POWER_OF_TWO)"
)

_ROUNDING = {"ROUND": Rounding.RND_CONV, "FLOOR": Rounding.TRN, "ROUND_TO_ZERO": Rounding.TRN_ZERO}


def _error(where: str, why: str, accepted: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(f"{where}: {why}; accepted: {accepted}")


def _is_pow2(value: float) -> bool:
    m, _ = math.frexp(value)
    return value > 0 and m == 0.5


def scale_fracs(
    where: str,
    scale: Any,
    what: str,
    per_channel_ok: bool = False,
    accepted: str | None = None,
) -> np.ndarray:
    """Fractional bits of a power-of-two scale tensor (one per element), or raise.

    A scale ``2**-f`` has ``f`` fractional bits. Per-channel scales (more than one element)
    are refused unless ``per_channel_ok``.
    """
    s = np.asarray(torch.as_tensor(scale).detach().cpu().double().numpy()).reshape(-1)
    if s.size != 1 and not per_channel_ok:
        raise _error(
            where,
            f"{what} has a per-channel scale ({s.size} values)",
            accepted
            or "a per-tensor power-of-two scale for activations (per-channel scales are "
            "accepted for weights)",
        )
    fracs = []
    for v in s:
        if not np.isfinite(v) or not _is_pow2(float(v)):
            raise _error(
                where,
                f"{what} has scale {float(v)!r}, not a power of two",
                accepted or POW2_ACCEPTED,
            )
        fracs.append(-(math.frexp(float(v))[1] - 1))
    return np.asarray(fracs, dtype=np.int64)


def quantiser_rounding(where: str, proxy: Any, what: str, accepted: str | None = None) -> Rounding:
    """Rounding of a quantiser, read from its actual ``IntQuant.float_to_int_impl`` module.

    (The proxy's ``rounding_mode`` reads the injector's ``float_to_int_impl_type``, which a
    ``.let(float_to_int_impl=...)`` override leaves stale.)
    """
    from brevitas.core.quant.int_base import IntQuant
    from brevitas.utils.quant_utils import float_to_int_impl_to_enum

    impls = [m.float_to_int_impl for m in proxy.modules() if isinstance(m, IntQuant)]
    modes = {str(float_to_int_impl_to_enum(impl)).split(".")[-1].upper() for impl in impls}
    if not impls:
        mode = getattr(proxy, "rounding_mode", None)
        modes = {str(mode).split(".")[-1].upper()}
    if len(modes) != 1 or next(iter(modes)) not in _ROUNDING:
        raise _error(
            where,
            f"{what} rounds with {sorted(modes)}",
            accepted or "ROUND (half to even), FLOOR, ROUND_TO_ZERO",
        )
    return _ROUNDING[next(iter(modes))]


def quantiser_kind(proxy: Any) -> str:
    """``"binary"`` (+-scale: Brevitas BinaryQuant / ClampedBinaryQuant), ``"ternary"``
    (TernaryQuant: -scale, 0, +scale by a threshold) or ``"int"`` (rounding integer quantiser)."""
    from brevitas.core.quant import BinaryQuant, ClampedBinaryQuant, TernaryQuant

    modules = list(proxy.modules()) if proxy is not None and hasattr(proxy, "modules") else []
    if any(isinstance(m, BinaryQuant | ClampedBinaryQuant) for m in modules):
        return "binary"
    if any(isinstance(m, TernaryQuant) for m in modules):
        return "ternary"
    return "int"


def _make_type(
    where: str,
    what: str,
    width: int,
    frac: int,
    signed: bool,
    narrow: bool,
    rounding: Rounding,
    accepted: str | None,
) -> FixedType:
    if narrow and not signed:
        raise _error(
            where,
            f"{what} is unsigned with narrow range",
            accepted or "narrow range only for signed quantisers",
        )
    overflow = Overflow.SAT_SYM if narrow else Overflow.SAT
    return FixedType(width, width - frac, signed, rounding, overflow)


def fixed_type_of(
    where: str, qt: Any, proxy: Any, what: str, accepted: str | None = None
) -> FixedType:
    """The :class:`FixedType` of a run-time QuantTensor ``qt`` produced by the quantiser ``proxy``.

    Raises
    ------
    UnsupportedLayerError
        If ``qt`` is not an integer QuantTensor, has a non-zero zero point, a scale that is not
        a per-tensor power of two, or an unsupported rounding.
    """
    if not isinstance(qt, IntQuantTensor):
        raise _error(
            where,
            f"{what} is not an integer-quantised tensor ({type(qt).__name__})",
            accepted or "Brevitas integer quantisers with power-of-two scales",
        )
    if bool((torch.as_tensor(qt.zero_point).detach() != 0).any()):
        raise _error(
            where,
            f"{what} has a non-zero zero point",
            accepted or "zero point 0 (symmetric quantisers)",
        )
    frac = int(scale_fracs(where, qt.scale, what, accepted=accepted)[0])
    width = int(round(float(torch.as_tensor(qt.bit_width))))
    kind = quantiser_kind(proxy)
    if kind != "int":
        # +-scale (and 0 for ternary): a narrow signed 2-bit type holds every value; the
        # quantiser itself (a sign or threshold, not a rounding) is lowered to thresholds.
        return FixedType(2, 2 - frac, True, Rounding.RND_CONV, Overflow.SAT_SYM)
    narrow = bool(getattr(proxy, "is_narrow_range", False))
    rounding = quantiser_rounding(where, proxy, what, accepted)
    return _make_type(where, what, width, frac, bool(qt.signed), narrow, rounding, accepted)


def proxy_type(
    proxy: Any, where: str, what: str = "the quantiser", accepted: str | None = None
) -> FixedType:
    """The :class:`FixedType` of an activation quant proxy, read from its (eval-mode) state.

    For quantisers that are called inside a module (e.g. the gates of a ``QuantLSTM``), where
    no run-time QuantTensor is recorded. Same rules as :func:`fixed_type_of`.
    """
    if proxy is None or not getattr(proxy, "is_quant_enabled", False):
        raise _error(where, f"{what} is missing or disabled", accepted or "an enabled quantiser")
    if float(torch.as_tensor(proxy.zero_point()).abs().max()) != 0.0:
        raise _error(
            where,
            f"{what} has a non-zero zero point",
            accepted or "zero point 0 (symmetric quantisers)",
        )
    frac = int(scale_fracs(where, proxy.scale(), what, accepted=accepted)[0])
    width = int(round(float(torch.as_tensor(proxy.bit_width()))))
    narrow = bool(proxy.is_narrow_range)
    rounding = quantiser_rounding(where, proxy, what, accepted)
    return _make_type(where, what, width, frac, bool(proxy.is_signed), narrow, rounding, accepted)


def weight_mantissas(
    where: str,
    qt: Any,
    what: str = "weight",
    per_channel_ok: bool = True,
    accepted: str | None = None,
) -> tuple[np.ndarray, FixedType]:
    """Integer mantissas and one signed FixedType for a quantised weight or bias tensor.

    Per-channel power-of-two scales (along axis 0) are brought to the finest one by exact left
    shifts, so one FixedType describes every channel.
    """
    if not isinstance(qt, IntQuantTensor):
        raise _error(
            where,
            f"the {what} is not quantised ({type(qt).__name__})",
            accepted
            or f"an integer {what} quantiser with power-of-two scale"
            + (" (e.g. bias_quant=Int16Bias) or bias=False" if what == "bias" else ""),
        )
    if bool((torch.as_tensor(qt.zero_point).detach() != 0).any()):
        raise _error(where, f"the {what} has a non-zero zero point", accepted or "zero point 0")
    value = qt.value.detach().double().cpu().numpy()
    scale = torch.as_tensor(qt.scale).detach().double().cpu().numpy()
    fracs = scale_fracs(where, scale, f"the {what}", per_channel_ok, accepted)
    frac = int(fracs.max())
    mant = np.ldexp(value, frac)  # value * 2**frac is an integer per element (per-channel too)
    if not np.array_equal(mant, np.round(mant)):
        raise _error(
            where,
            f"the {what} values are not on their quantisation grid",
            accepted or POW2_ACCEPTED,
        )
    mant = mant.astype(np.int64)
    bits = int(round(float(torch.as_tensor(qt.bit_width)))) + int(fracs.max() - fracs.min())
    need = max(int(np.abs(mant).max()).bit_length() + 1 if mant.size else 1, 2)
    width = max(bits, need)
    return mant, FixedType(width, width - frac, True)


def _bits_signed(lo: int, hi: int) -> int:
    return max(int(hi).bit_length(), int(-lo - 1).bit_length() if lo < 0 else 0) + 1


def acc_type_from_bound(bound: int, frac: int) -> FixedType:
    """The smallest signed type with ``frac`` fractional bits holding ``|mantissa| <= bound``."""
    width = max(int(bound).bit_length() + 1, 2)
    return FixedType(width, width - frac, True)


def acc_type_for(
    in_type: FixedType,
    weight: np.ndarray,
    weight_type: FixedType,
    bias: np.ndarray | None,
    bias_type: FixedType | None,
) -> tuple[FixedType, int]:
    """Exact accumulator type for ``sum(x * w) + b`` and the bound of its |partial sums| (lsb).

    ``weight`` has shape (out, ...). The range is computed per output from the signs of the
    weights and the input range, so the type cannot overflow; the bound (on every partial sum,
    any order) is ``max|x| * sum|w| + |b|``.
    """
    prod_frac = in_type.frac + weight_type.frac
    frac = max(prod_frac, bias_type.frac if bias_type is not None else prod_frac)
    shift_p = frac - prod_frac
    w = weight.reshape(weight.shape[0], -1).astype(object)
    x_lo, x_hi = in_type.int_min, in_type.int_max
    pos = np.where(w > 0, w, 0).sum(axis=1)
    neg = np.where(w < 0, w, 0).sum(axis=1)
    hi = (pos * x_hi + neg * x_lo) * (1 << shift_p)
    lo = (pos * x_lo + neg * x_hi) * (1 << shift_p)
    abs_bound = (np.abs(w).sum(axis=1) * max(abs(x_lo), abs(x_hi))) * (1 << shift_p)
    if bias is not None and bias_type is not None:
        b = bias.astype(object) * (1 << (frac - bias_type.frac))
        hi, lo = hi + b, lo + b
        abs_bound = abs_bound + np.abs(b)
    width = max(_bits_signed(int(min(lo)), int(max(hi))), 2)
    return FixedType(width, width - frac, True), int(max(abs_bound))


# ------------------------------------------------------------------------ float scales
def scale_values(scale: Any) -> np.ndarray:
    """A Brevitas scale tensor as float64 values (exactly its float32 numbers), flattened."""
    return np.asarray(torch.as_tensor(scale).detach().cpu().double().numpy()).reshape(-1)


def is_fixed_point_scale(scale: Any) -> bool:
    """True when every scale value is a power of two (the tensor is plain fixed point)."""
    return all(np.isfinite(v) and _is_pow2(float(v)) for v in scale_values(scale))


def quant_format(
    where: str, qt: Any, proxy: Any, what: str, accepted: str | None = None
) -> tuple[FixedType, float | None]:
    """The format of an activation QuantTensor: (FixedType, None) for a power-of-two scale, or
    (integer FixedType, scale) for a per-tensor float scale (real value = integer * scale).

    Binary/ternary quantisers and per-channel activation scales need a power of two (raises).
    """
    if (
        not isinstance(qt, IntQuantTensor)
        or is_fixed_point_scale(qt.scale)
        or quantiser_kind(proxy) != "int"
    ):
        return fixed_type_of(where, qt, proxy, what, accepted), None
    if bool((torch.as_tensor(qt.zero_point).detach() != 0).any()):
        raise _error(
            where, f"{what} has a non-zero zero point", accepted or "zero point 0 (symmetric)"
        )
    s = scale_values(qt.scale)
    if s.size != 1:
        raise _error(
            where,
            f"{what} has a per-channel scale ({s.size} values)",
            accepted or "a per-tensor scale for activations (per-channel is accepted for weights)",
        )
    if not (np.isfinite(s[0]) and s[0] > 0):
        raise _error(where, f"{what} has scale {float(s[0])!r}", accepted or "a positive scale")
    width = int(round(float(torch.as_tensor(qt.bit_width))))
    narrow = bool(getattr(proxy, "is_narrow_range", False))
    rounding = quantiser_rounding(where, proxy, what, accepted)
    t = _make_type(where, what, width, 0, bool(qt.signed), narrow, rounding, accepted)
    return t, float(s[0])


def weight_ints(
    where: str, qt: Any, what: str = "weight", accepted: str | None = None
) -> tuple[np.ndarray, FixedType, np.ndarray | None]:
    """Weights of any scale: (mantissas, FixedType, per-output-channel float scale or None).

    Power-of-two scales go through :func:`weight_mantissas` (scale None). Float scales (per
    tensor or per channel along axis 0) give the integers Brevitas multiplies by the scale,
    an integer FixedType and the scale per output channel (float64 holding float32 values):
    the real weight is ``mantissa * scale[c]``.
    """
    if not isinstance(qt, IntQuantTensor) or is_fixed_point_scale(qt.scale):
        mant, t = weight_mantissas(where, qt, what, True, accepted)
        return mant, t, None
    if bool((torch.as_tensor(qt.zero_point).detach() != 0).any()):
        raise _error(where, f"the {what} has a non-zero zero point", accepted or "zero point 0")
    value = qt.value.detach().float().cpu().numpy()
    scale32 = torch.as_tensor(qt.scale).detach().float().cpu().numpy()
    channels = value.shape[0]
    if scale32.size not in (1, channels) or (
        scale32.size == channels and scale32.size > 1 and scale32.shape[0] != channels
    ):
        raise _error(
            where,
            f"the {what} scale has shape {tuple(scale32.shape)}",
            accepted or "a per-tensor or per-output-channel (axis 0) scale",
        )
    if np.any(~np.isfinite(scale32)) or np.any(scale32 <= 0):
        raise _error(where, f"the {what} has a non-positive scale", accepted or "positive scales")
    bshape = (channels,) + (1,) * (value.ndim - 1) if scale32.size > 1 else (1,) * value.ndim
    s32 = scale32.reshape(bshape)
    mant = np.round(value.astype(np.float64) / s32.astype(np.float64))
    # Brevitas' value is float32(int * scale): the integers must reproduce it exactly
    if not np.array_equal((mant.astype(np.float32) * s32).astype(np.float32), value):
        raise _error(
            where,
            f"the {what} values are not integer multiples of their scale",
            accepted or "an integer weight quantiser (zero point 0)",
        )
    mant = mant.astype(np.int64)
    bits = int(round(float(torch.as_tensor(qt.bit_width))))
    need = max(int(np.abs(mant).max()).bit_length() + 1 if mant.size else 1, 2)
    width = max(bits, need)
    per_channel = np.broadcast_to(scale32.reshape(-1), (channels,)).astype(np.float64)
    return mant, FixedType(width, width, True), per_channel.copy()
