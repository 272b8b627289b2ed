"""Requantisation as integer thresholds: the search, and the exact real-valued requantiser.

A requantisation (a quantised activation after an integer accumulator, with whatever float
math lies between: float scales, a float bias, BatchNorm) is a monotone step function of the
accumulator per channel. The hardware implements it as a
:class:`~qnet.hw.graph.MultiThreshold`: :func:`threshold_layer` finds, for every output level,
the smallest accumulator reaching it, by binary search on a function ``q`` evaluated at integer
accumulator points.

Two kinds of ``q``:

* :func:`exact_requant` - the real-valued math, exactly: for an accumulator ``a`` with fixed
  value ``a * 2**-f``, per-channel float scale ``S`` and float bias ``B`` (dyadic rationals:
  float32 numbers and exact products of two), the quantiser computes
  ``clamp(round(v / s_y))`` with ``v = a * 2**-f * S + B`` in exact rational arithmetic (Python
  integers). This is what the hardware computes when a float-scale layer feeds a quantiser
  directly. Brevitas computes ``v`` in float32 and may differ at a rounding boundary; the
  verification proves each such case (:mod:`qnet.float_proof`).
* a torch replay (in :mod:`qnet.lowering.layers`) when float modules (BatchNorm, TensorNorm)
  sit between: ``v`` is rounded once (correctly, :func:`real_to_float32`) to float32, then the
  very torch modules run on it. This defines the hardware for those models; again Brevitas'
  float32 sum can differ from ``v`` only within its error bound.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from math import lcm
from typing import Any

import numpy as np

from qnet.errors import InternalError
from qnet.hw.fixed import FixedType, round_rational

__all__ = [
    "Affine",
    "exact_requant",
    "real_to_float32",
    "search_thresholds",
]

#: q(a): accumulator mantissas (K, C) int64 -> output mantissas (K, C) int64
QFn = Callable[[np.ndarray], np.ndarray]


class Affine:
    """Exact ``v = a * 2**-frac * scale[c] + offset[c]`` as ``(a * p[c] + q[c]) / d``.

    ``p``, ``q`` are Python integers per channel, ``d`` a positive integer; the constants are
    dyadic rationals (float64 numbers), so everything is exact integer arithmetic.
    """

    def __init__(
        self, frac: int, scale: np.ndarray | None, offset: np.ndarray | None, channels: int
    ) -> None:
        s = _per_channel(scale, channels, 1.0)
        b = _per_channel(offset, channels, 0.0)
        coef = [Fraction(float(v)) / Fraction(2) ** frac for v in s]
        const = [Fraction(float(v)) for v in b]
        d = 1
        for f in coef + const:
            d = lcm(d, f.denominator)
        self.d = d
        self.p = np.array([int(f * d) for f in coef], dtype=object)
        self.q = np.array([int(f * d) for f in const], dtype=object)

    def numerators(self, a: np.ndarray) -> np.ndarray:
        """``a * p + q`` (object array of Python ints) for mantissas ``a`` of shape (K, C)."""
        return np.asarray(a, dtype=np.int64).astype(object) * self.p + self.q


def _per_channel(values: np.ndarray | None, channels: int, default: float) -> np.ndarray:
    if values is None:
        return np.full(channels, default)
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        return np.full(channels, float(arr[0]))
    if arr.size != channels:
        raise InternalError(f"{arr.size} per-channel constants for {channels} channels")
    return arr


def exact_requant(affine: Affine, out_scale: float | None, out_type: FixedType, relu: bool) -> QFn:
    """q(a) = clamp(round(v / s_y)) exactly, ``v`` from ``affine``; ``s_y`` is ``out_scale``
    (a float scale: ``out_type`` is an integer type) or ``2**-out_type.frac``; ``relu`` applies
    max(v, 0) first (QuantReLU)."""
    s_y = Fraction(float(out_scale)) if out_scale is not None else Fraction(2) ** -out_type.frac
    # v / s_y = (a p + q) / (d s_y) = (a p + q) * s_y.den / (d * s_y.num)
    mul = s_y.denominator
    den = affine.d * s_y.numerator
    lo, hi = out_type.int_min, out_type.int_max

    def q(a: np.ndarray) -> np.ndarray:
        y = round_rational(affine.numerators(a) * mul, den, out_type.rounding)
        y = np.minimum(np.maximum(y, max(lo, 0) if relu else lo), hi)
        return y.astype(np.int64)

    return q


def real_to_float32(num: np.ndarray, den: int) -> np.ndarray:
    """``num / den`` correctly rounded (half to even) to float32, for Python-int numerators and a
    power-of-two ``den`` (the value of a float-scaled accumulator); float32 array."""
    if den & (den - 1):
        raise InternalError("real_to_float32 needs a power-of-two denominator")
    e = den.bit_length() - 1

    def one(n: int) -> float:
        if n == 0:
            return 0.0
        mag = abs(n)
        shift = mag.bit_length() - 24
        if shift > 0:
            m, rem = mag >> shift, mag & ((1 << shift) - 1)
            half = 1 << (shift - 1)
            if rem > half or (rem == half and m & 1):
                m += 1
        else:
            m, shift = mag, 0
        value = float(np.ldexp(float(m), shift - e))  # m <= 2**24: exact, one rounding done
        return -value if n < 0 else value

    flat = [one(int(n)) for n in np.asarray(num, dtype=object).reshape(-1)]
    return np.asarray(flat, dtype=np.float32).reshape(np.shape(num))


def search_thresholds(
    q: QFn, a_min: int, a_max: int, channels: int
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Thresholds of the monotone per-channel step function ``q`` on ``[a_min, a_max]``.

    Returns ``(thresholds (C, K) ascending, increasing (C,), out_base, ends (2, C))``: for an
    increasing channel, ``q(a) = out_base + #{k : a >= thresholds[c, k]}``; for a decreasing
    one ``out_base + #{k : a < thresholds[c, k]}`` (the :class:`MultiThreshold` semantics).
    """
    ends = q(np.array([[a_min] * channels, [a_max] * channels], dtype=np.int64))
    increasing = ends[1] >= ends[0]
    base = int(ends.min())
    top = int(ends.max())
    n_thr = top - base
    levels = base + 1 + np.arange(n_thr, dtype=np.int64)[:, None]  # (K, 1)
    lo = np.full((n_thr, channels), a_min, dtype=np.int64)
    hi = np.full((n_thr, channels), a_max + 1, dtype=np.int64)
    # smallest a with cond(a): cond = q(a) >= k (increasing) or q(a) < k (decreasing)
    for _ in range(80):
        active = lo < hi
        if not active.any():
            break
        mid = lo + (hi - lo) // 2
        qm = q(np.minimum(mid, a_max))
        cond = np.where(increasing[None, :], qm >= levels, qm < levels)
        hi = np.where(active & cond, mid, hi)
        lo = np.where(active & ~cond, mid + 1, lo)
    else:  # pragma: no cover - 80 halvings cover any int64 range
        raise InternalError("threshold search did not converge")
    return np.sort(lo.T, axis=1), increasing, base, ends


def eval_thresholds(
    thresholds: np.ndarray, increasing: np.ndarray, base: int, a: np.ndarray
) -> np.ndarray:
    """The MultiThreshold function at accumulator mantissas ``a`` (K, C)."""
    out = np.empty_like(a)
    n = thresholds.shape[1]
    for c in range(a.shape[1]):
        count = np.searchsorted(thresholds[c], a[:, c], side="right")
        out[:, c] = base + (count if increasing[c] else n - count)
    return out


def check_thresholds(
    q: QFn, thresholds: np.ndarray, increasing: np.ndarray, base: int, a_min: int, a_max: int
) -> bool:
    """``q`` equals the thresholds at the end points and on both sides of every threshold
    (catches a ``q`` that is not monotone per channel)."""
    channels = thresholds.shape[0]
    ends = np.array([[a_min] * channels, [a_max] * channels], dtype=np.int64)
    pts = np.concatenate([thresholds.T, thresholds.T - 1, ends])
    ok = (pts >= a_min) & (pts <= a_max)
    got = eval_thresholds(thresholds, increasing, base, pts)
    want = q(np.clip(pts, a_min, a_max))
    return bool(np.array_equal(got[ok], want[ok]))


def _floats(values: Any) -> list[float] | None:
    if values is None:
        return None
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def record_requant(
    ctx: Any,
    layer: str,
    ref: Any,
    out_type: FixedType,
    out_scale: float | None,
    relu: bool,
    exact: bool,
    module_path: str,
    kind: str = "int",
) -> None:
    """Record a float requantisation in ``graph.meta['float_requant']`` (JSON), for the
    verification's float32 boundary proofs (:mod:`qnet.float_proof`)."""
    from qnet.hw.host import host_ops_to_json
    from qnet.lowering.host import host_ops_of_pending

    pending: list[dict[str, Any]] | None = []
    if ref.pending:
        try:
            pending = host_ops_to_json(host_ops_of_pending(ctx, ref.pending))
        except Exception:  # noqa: BLE001 - no host replay: the proof reports it cannot run
            pending = None
    ctx.meta.setdefault("float_requant", []).append(
        {
            "layer": layer,
            "input": ref.producer,
            "module": module_path,
            "exact": bool(exact),
            "kind": kind,
            "in_frac": int(ref.type.frac),
            "scale": _floats(ref.scale),
            "offset": _floats(ref.offset),
            "out_scale": out_scale,
            "out_frac": int(out_type.frac),
            "int_min": int(out_type.int_min),
            "int_max": int(out_type.int_max),
            "rounding": out_type.rounding.name,
            "relu": bool(relu),
            "pending": pending,
        }
    )


def output_affine(ref: Any) -> Any:
    """The host op turning a float-scaled hardware output into the model's float values:
    ``affine`` with per-channel constants shaped to broadcast over ``(N, *shape)``."""
    from qnet.hw.host import HostOp

    channels = ref.shape[0] if ref.shape else 1
    bshape = (channels,) + (1,) * (len(ref.shape) - 1) if ref.shape else ()
    scale = _per_channel(ref.scale, channels, 1.0).reshape(bshape)
    offset = _per_channel(ref.offset, channels, 0.0).reshape(bshape)
    return HostOp("affine", scale, offset, source=f"float scale/bias of layer {ref.layer!r}")
