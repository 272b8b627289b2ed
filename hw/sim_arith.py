"""Exact integer arithmetic of the simulator: products, requantisation, rounding.

Pure functions on integer mantissas (no state). Matrix products and the requantisation after
them use float32 / float64 only when it is provably exact: every partial sum is an integer
whose magnitude is at most ``bound = max|x| * max_row sum|w| + max|b|``; when
``bound < 2**53`` every partial sum, in any summation order, is an exactly representable
float64 integer, so the float64 result is the exact integer (likewise float32 below ``2**24``).
``max|x|`` is the largest mantissa magnitude of the input's ``FixedType`` (no data reduction is
needed); only when that static bound is too large is the bound of the actual data used.
Otherwise the product is computed in int64 (exact while ``bound < 2**63``; past that
:class:`~qnet.errors.FormatError`).

Requantisation in float (:func:`_float_requant`) is exact for the same reason: the values are
integers below the float's exact limit; scaling by a power of two only changes the exponent;
``floor``, ``ceil``, ``trunc``, ``rint`` and ``clip`` of an exactly represented value are exact;
and ``w + 1/2`` (the round-to-nearest modes) is exact because the integer bound plus
``2**(shift - 1)`` stays below the limit (checked before the float path is taken).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qnet.errors import FormatError, InternalError
from qnet.hw.fixed import FixedType, Overflow, Rounding

__all__ = [
    "FLOAT_EXACT_LIMIT",
    "FLOAT32_EXACT_LIMIT",
    "compact_dtype",
    "matmul_exact",
]

#: Largest integer magnitude below which float64 sums of integers are exact.
FLOAT_EXACT_LIMIT = 2**53
#: Same for float32 (24-bit significand).
FLOAT32_EXACT_LIMIT = 2**24
_INT_LIMIT = 2**62


def _abs_max(a: np.ndarray) -> int:
    if not a.size:
        return 0
    return max(abs(int(a.min())), abs(int(a.max())))


def _type_absmax(t: FixedType) -> int:
    """Largest mantissa magnitude of ``t``: a static bound on any tensor of that type."""
    return max(-t.int_min, t.int_max)


def _exact_dtype(bound: int) -> type[np.generic]:
    """Cheapest dtype in which integer sums bounded by ``bound`` are exact (see module doc)."""
    if bound < FLOAT32_EXACT_LIMIT:  # float32 integers are exact below 2**24: faster BLAS
        return np.float32
    if bound < FLOAT_EXACT_LIMIT:
        return np.float64
    if bound < _INT_LIMIT:
        return np.int64
    raise FormatError(
        f"accumulator bound {bound} exceeds int64; the layer is too wide to simulate exactly"
    )


_COMPACT_DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32)


def compact_dtype(t: FixedType) -> np.dtype[Any]:
    """The smallest NumPy integer dtype holding every mantissa of ``t``."""
    for dt in _COMPACT_DTYPES:
        info = np.iinfo(dt)
        if info.min <= t.int_min and t.int_max <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def _bound(x_absmax: int, w_t: np.ndarray) -> int:
    return x_absmax * (int(np.abs(w_t).sum(axis=0).max()) if w_t.size else 0)


def matmul_exact(x: np.ndarray, w_t: np.ndarray, x_absmax: int | None = None) -> np.ndarray:
    """Exact ``x @ w_t`` for integer ``x`` (..., K) and ``w_t`` (K, M), as int64; float BLAS
    whenever the accumulator bound proves it exact."""
    x_absmax = _abs_max(x) if x_absmax is None else x_absmax
    dtype = _exact_dtype(_bound(x_absmax, w_t))
    return (x.astype(dtype, copy=False) @ w_t.astype(dtype)).astype(np.int64)


def _shift_left(m: np.ndarray, shift: int, what: str) -> np.ndarray:
    if shift < 0:
        raise InternalError(f"negative alignment shift for {what}")
    if shift and m.size and _abs_max(m).bit_length() + shift > 62:
        raise FormatError(f"{what}: aligning by {shift} bits overflows int64")
    return m << np.int64(shift) if shift else m


def _round_inplace(w: np.ndarray, mode: Rounding) -> None:
    """Round float ``w`` in place to integers by ``mode`` (exact; see :func:`_float_requant`)."""
    if mode is Rounding.TRN:
        np.floor(w, out=w)
    elif mode is Rounding.RND_CONV:
        np.rint(w, out=w)  # IEEE round half to even
    elif mode is Rounding.TRN_ZERO:
        np.trunc(w, out=w)
    elif mode is Rounding.RND:
        w += 0.5
        np.floor(w, out=w)
    elif mode is Rounding.RND_MIN_INF:
        w -= 0.5
        np.ceil(w, out=w)
    else:
        mag = np.abs(w)
        if mode is Rounding.RND_INF:
            mag += 0.5
            np.floor(mag, out=mag)
        else:  # RND_ZERO
            mag -= 0.5
            np.ceil(mag, out=mag)
        np.copysign(mag, w, out=w)


def _float_requant(
    w: np.ndarray, frac: int, lo: int, hi: int, t: FixedType
) -> tuple[np.ndarray, int, int] | None:
    """Cast exact integers ``w * 2**-frac`` (float32/float64, every value in ``[lo, hi]``) to
    mantissas of ``t``, in place, in float. Returns ``(w, new_lo, new_hi)`` or None when the
    float arithmetic would not be provably exact (then use ``t.quantize_int``).

    Exact because every value stays an integer (in units of the current lsb) below the
    float's exact limit: the scaling is by a power of two, the rounding functions and the
    clip of exact values are exact, and ``|w| + 1/2`` is representable since
    ``max(|lo|, |hi|) + 2**(shift - 1) < limit``.
    """
    limit = FLOAT32_EXACT_LIMIT if w.dtype == np.float32 else FLOAT_EXACT_LIMIT
    shift = frac - t.frac
    # Bounds first: nothing is written unless the whole cast is exact in float.
    if shift > 0:
        if shift >= 60 or max(-lo, hi) + (1 << shift) >= limit:
            return None
        rlo, rhi = lo >> shift, -((-hi) >> shift)
    else:
        rlo, rhi = lo << -shift, hi << -shift
        if max(-rlo, rhi) >= limit:
            return None
    tlo, thi = t.int_min, t.int_max
    slo = -thi if (t.overflow is Overflow.SAT_SYM and t.signed) else tlo
    overflow = rlo < tlo or rhi > thi
    if t.overflow is Overflow.WRAP and overflow:
        return None
    if shift > 0:
        np.multiply(w, w.dtype.type(2.0**-shift), out=w)
        _round_inplace(w, t.rounding)
    elif shift < 0:
        np.multiply(w, w.dtype.type(2.0**-shift), out=w)
    if t.overflow is Overflow.SAT_ZERO:
        if overflow:
            w[(w < tlo) | (w > thi)] = 0
            rlo, rhi = min(max(rlo, tlo), 0), max(min(rhi, thi), 0)
    elif t.overflow is not Overflow.WRAP and (rlo < slo or rhi > thi):  # SAT, SAT_SYM
        np.clip(w, slo, thi, out=w)
        rlo, rhi = max(rlo, slo), min(rhi, thi)
    return w, rlo, rhi


def _requant(x: np.ndarray, frac: int, lo: int, hi: int, t: FixedType) -> np.ndarray:
    """Cast exact integer mantissas ``x * 2**-frac`` (any integer dtype, values in
    ``[lo, hi]``; or a float array of exact integers, which may be overwritten) to ``t``.
    Returns mantissas of ``t`` in :func:`compact_dtype` ``(t)``."""
    out_dt = compact_dtype(t)
    shift = frac - t.frac
    if shift == 0 and t.int_min <= lo and hi <= t.int_max:
        sym = t.overflow is Overflow.SAT_SYM and t.signed
        if not sym or lo >= -t.int_max:
            return x.astype(out_dt, copy=False)
    if x.dtype.kind == "f":
        w = x
    else:
        mag = max(-lo, hi) << max(-shift, 0)
        need = mag + (1 << shift) if 0 < shift < 60 else mag
        if shift >= 60 or need >= FLOAT_EXACT_LIMIT:
            return t.quantize_int(x.astype(np.int64), frac).astype(out_dt)
        w = x.astype(np.float32 if need < FLOAT32_EXACT_LIMIT else np.float64)
    done = _float_requant(w, frac, lo, hi, t)
    if done is None:
        return t.quantize_int(x.astype(np.int64), frac).astype(out_dt)
    return done[0].astype(out_dt)
