"""``FixedType``: the one definition of a fixed-point number format in qnet.

A :class:`FixedType` means exactly what Xilinx/hls4ml ``ap_fixed<W,I,Q,O,N>``,
``ap_ufixed``, ``ap_int<W>`` and ``ap_uint<W>`` mean:

* ``width`` W bits in total, ``integer`` I bits left of the binary point (sign bit included
  for signed types; I may be negative or larger than W), so the lsb is ``2**(I - W)``;
* a value is ``mantissa * 2**(I - W)`` with an integer mantissa in
  ``[-2**(W-1), 2**(W-1) - 1]`` (signed) or ``[0, 2**W - 1]`` (unsigned);
* ``rounding`` says how a value between two representable ones is rounded (applied first),
  ``overflow`` what happens to a rounded value out of range (applied second).
* ``ap_int<W>`` / ``ap_uint<W>`` are ``FixedType(W, W, signed, TRN_ZERO, WRAP)``: casts to
  them follow C (truncate toward zero), unlike ``ap_fixed<W,W>`` (``AP_TRN`` floors).

The type owns its spellings (``ap_fixed<...>`` by :meth:`FixedType.ap_str`, hls4ml's
``fixed<...>`` by :meth:`FixedType.hls4ml_str`, both read by :meth:`FixedType.parse`):
they are names of this number format, not hls4ml rules, and one object printing every
spelling is what keeps the exports' precisions identical to the simulator's.

Checked bit for bit against the ap_types headers shipped with hls4ml by
``tests/hw/test_fixed_diff.py``. One known header defect is not copied: ``ap_int<W>(double x)``
returns 1 (not 0) for -0.5 < x < 0; ``ap_fixed`` casts and ``ap_fixed -> ap_int`` are correct.

Exactness. All arithmetic is done on integer mantissas (int64) or on float64 values where a
float64 operation is provably exact: scaling by a power of two (``np.ldexp``) with no
over/underflow, ``floor``, ``x - floor(x)`` and ``fmod`` are exact in IEEE-754. Mantissas
are held in int64, so :meth:`FixedType.to_int` supports ``width <= 62``; float64 values hold
any integer up to 2**53, so :meth:`FixedType.quantize` and :meth:`FixedType.from_int`
support ``width <= 53``. Past those limits they raise :class:`qnet.errors.FormatError`
instead of returning a rounded guess.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import numpy as np

from qnet.errors import DataError, FormatError, InternalError

__all__ = [
    "FixedType",
    "Rounding",
    "Overflow",
    "MAX_INT_WIDTH",
    "MAX_FLOAT_WIDTH",
    "round_rational",
]

#: Widest type whose mantissas fit int64 with headroom for rounding.
MAX_INT_WIDTH = 62
#: Widest type whose values float64 represents exactly.
MAX_FLOAT_WIDTH = 53


class Rounding(enum.Enum):
    """Quantisation (rounding) modes of ``ap_fixed`` (``AP_TRN`` ... ``AP_RND_CONV``)."""

    TRN = "TRN"  #: toward minus infinity (floor); the ap_fixed default
    TRN_ZERO = "TRN_ZERO"  #: toward zero
    RND = "RND"  #: to nearest, ties toward plus infinity
    RND_ZERO = "RND_ZERO"  #: to nearest, ties toward zero
    RND_INF = "RND_INF"  #: to nearest, ties away from zero
    RND_MIN_INF = "RND_MIN_INF"  #: to nearest, ties toward minus infinity
    RND_CONV = "RND_CONV"  #: to nearest, ties to even (convergent; torch.round, Brevitas)


class Overflow(enum.Enum):
    """Overflow (saturation) modes of ``ap_fixed`` (``AP_WRAP`` ... ``AP_SAT_SYM``)."""

    WRAP = "WRAP"  #: drop the high bits (two's complement wrap); the ap_fixed default
    SAT = "SAT"  #: clamp to [min, max]
    SAT_ZERO = "SAT_ZERO"  #: an overflowing value becomes zero
    SAT_SYM = "SAT_SYM"  #: signed: clamp to [-max, max]; unsigned: like SAT


#: Rounding modes with a one-shift integer implementation in ``quantize_int``.
_SHIFT_ROUNDINGS = frozenset({Rounding.TRN, Rounding.RND, Rounding.RND_CONV})

_TYPE_RE = re.compile(
    r"^\s*(?P<name>ap_fixed|ap_ufixed|ap_int|ap_uint|fixed|ufixed|int|uint)\s*"
    r"<\s*(?P<args>[^<>]*)>\s*$"
)


def _parse_enum(enum_cls: type[enum.Enum], text: str, spelling: str, field: str) -> enum.Enum:
    key = text.strip().upper()
    for prefix in ("AP_", "AC_"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    try:
        return enum_cls[key]
    except KeyError:
        accepted = ", ".join(f"AP_{m.name}" for m in enum_cls)  # type: ignore[var-annotated]
        raise FormatError(
            f"{spelling!r}: unknown {field} mode {text.strip()!r}; accepted: {accepted}"
        ) from None


@dataclass(frozen=True)
class FixedType:
    """A fixed-point format, exactly as ``ap_fixed<width, integer, rounding, overflow>``.

    Parameters
    ----------
    width : int
        Total number of bits W (>= 1).
    integer : int
        Bits left of the binary point I, including the sign bit when signed. May be negative
        (all bits are fractional and the value is small) or larger than ``width`` (the lsb is
        larger than one).
    signed : bool
        Two's complement (``ap_fixed``) or unsigned (``ap_ufixed``).
    rounding : Rounding
        How values between representable points are rounded.
    overflow : Overflow
        What happens to a rounded value outside ``[min, max]``.
    """

    width: int
    integer: int
    signed: bool = True
    rounding: Rounding = Rounding.TRN
    overflow: Overflow = Overflow.WRAP

    def __post_init__(self) -> None:
        for field in ("width", "integer"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise FormatError(f"FixedType.{field} must be an int, got {value!r}")
            object.__setattr__(self, field, int(value))
        if not isinstance(self.signed, bool | np.bool_):
            raise FormatError(f"FixedType.signed must be a bool, got {self.signed!r}")
        object.__setattr__(self, "signed", bool(self.signed))
        if self.width < 1:
            raise FormatError(f"FixedType.width must be >= 1, got {self.width}")
        for field, cls in (("rounding", Rounding), ("overflow", Overflow)):
            value = getattr(self, field)
            if isinstance(value, str):
                value = _parse_enum(cls, value, str(value), field)
                object.__setattr__(self, field, value)
            if not isinstance(value, cls):
                raise FormatError(f"FixedType.{field} must be a {cls.__name__}, got {value!r}")
        if self.signed and self.width < 2 and self.overflow is Overflow.SAT_SYM:
            raise FormatError("ap_fixed<1,...> with AP_SAT_SYM has no symmetric range")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def int_type(cls, width: int, signed: bool = True) -> FixedType:
        """``ap_int<width>`` / ``ap_uint<width>``.

        Casting a double or an ``ap_fixed`` to ``ap_int`` follows C (truncation toward zero,
        then wrap), unlike ``ap_fixed<W,W>`` whose default ``AP_TRN`` floors; so this is
        ``FixedType(width, width, signed, TRN_ZERO, WRAP)``.
        """
        return cls(width, width, signed, Rounding.TRN_ZERO, Overflow.WRAP)

    @classmethod
    def parse(cls, text: str) -> FixedType:
        """Parse ``ap_fixed<W,I[,Q[,O[,N]]]>``, ``ap_ufixed<...>``, ``ap_int<W>``,
        ``ap_uint<W>`` and hls4ml's ``fixed<...>``, ``ufixed<...>``, ``int<W>``, ``uint<W>``.

        Raises
        ------
        FormatError
            For any other spelling, or saturation bits N other than 0.
        """
        if not isinstance(text, str):
            raise FormatError(f"a fixed-point type must be given as a string, got {text!r}")
        match = _TYPE_RE.match(text)
        if match is None:
            raise FormatError(
                f"{text!r} is not a fixed-point type; expected e.g. 'ap_fixed<8,3,AP_RND_CONV,AP_SAT>',"
                " 'ap_ufixed<6,0>', 'ap_int<8>', 'ap_uint<4>', 'fixed<8,3>'"
            )
        name = match["name"].removeprefix("ap_")
        args = [a.strip() for a in match["args"].split(",")]
        signed = not name.startswith("u")

        def as_int(s: str, field: str) -> int:
            try:
                return int(s)
            except ValueError:
                raise FormatError(f"{text!r}: {field} must be an integer, got {s!r}") from None

        if name in ("int", "uint"):
            if len(args) != 1:
                raise FormatError(f"{text!r}: {match['name']}<W> takes exactly one argument")
            return cls.int_type(as_int(args[0], "width"), signed)
        if not 2 <= len(args) <= 5:
            raise FormatError(f"{text!r}: {match['name']}<W,I[,Q[,O[,N]]]> takes 2 to 5 arguments")
        width, integer = as_int(args[0], "width"), as_int(args[1], "integer")
        rounding = (
            _parse_enum(Rounding, args[2], text, "rounding") if len(args) > 2 else Rounding.TRN
        )
        overflow = (
            _parse_enum(Overflow, args[3], text, "overflow") if len(args) > 3 else Overflow.WRAP
        )
        if len(args) > 4 and as_int(args[4], "saturation bits") != 0:
            raise FormatError(f"{text!r}: saturation bits N={args[4]} are not supported (only N=0)")
        return cls(width, integer, signed, rounding, overflow)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ spelling
    def __str__(self) -> str:
        return self.ap_str()

    def ap_str(self) -> str:
        """The C++ spelling, e.g. ``ap_fixed<8,3,AP_RND_CONV,AP_SAT>`` or ``ap_int<8>``."""
        prefix = "ap_" if self.signed else "ap_u"
        if self.is_integer_type:
            return f"{prefix}int<{self.width}>"
        tail = ""
        if self.rounding is not Rounding.TRN or self.overflow is not Overflow.WRAP:
            tail = f",AP_{self.rounding.name},AP_{self.overflow.name}"
        return f"{prefix}fixed<{self.width},{self.integer}{tail}>"

    def hls4ml_str(self) -> str:
        """hls4ml's spelling, e.g. ``fixed<8,3,RND_CONV,SAT>`` or ``uint<4>``."""
        prefix = "" if self.signed else "u"
        if self.is_integer_type:
            return f"{prefix}int<{self.width}>"
        tail = ""
        if self.rounding is not Rounding.TRN or self.overflow is not Overflow.WRAP:
            tail = f",{self.rounding.name},{self.overflow.name}"
        return f"{prefix}fixed<{self.width},{self.integer}{tail}>"

    @property
    def is_integer_type(self) -> bool:
        """True when this is exactly ``ap_int<W>`` / ``ap_uint<W>`` (TRN_ZERO, WRAP, lsb 1)."""
        return (
            self.integer == self.width
            and self.rounding is Rounding.TRN_ZERO
            and self.overflow is Overflow.WRAP
        )

    # ------------------------------------------------------------------ properties
    @property
    def frac(self) -> int:
        """Number of fractional bits F = W - I (negative when the lsb is above 1)."""
        return self.width - self.integer

    @property
    def step(self) -> float:
        """The lsb, ``2**(I - W)``."""
        return float(np.ldexp(1.0, -self.frac))

    @property
    def int_min(self) -> int:
        """Smallest mantissa (ignoring SAT_SYM, which only limits what saturation produces)."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def int_max(self) -> int:
        """Largest mantissa."""
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min(self) -> float:
        """Smallest representable value."""
        return float(np.ldexp(float(self.int_min), -self.frac))

    @property
    def max(self) -> float:
        """Largest representable value."""
        return float(np.ldexp(float(self.int_max), -self.frac))

    def with_(self, **changes: object) -> FixedType:
        """A copy with some fields changed (validated)."""
        fields = {
            "width": self.width,
            "integer": self.integer,
            "signed": self.signed,
            "rounding": self.rounding,
            "overflow": self.overflow,
        }
        fields.update(changes)
        return FixedType(**fields)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ arithmetic
    def _check_width(self, limit: int, what: str) -> None:
        if self.width > limit:
            raise FormatError(
                f"{self}: {what} supports widths up to {limit} bits exactly, got {self.width}"
            )

    def quantize(self, x: np.ndarray | float) -> np.ndarray:
        """Round and saturate/wrap ``x`` into this type, as ``ap_fixed<...>(double)`` does.

        Returns float64 values, each exactly representable in this type. Values already in
        the type are returned unchanged.

        Raises
        ------
        DataError
            If ``x`` holds NaN or infinity.
        FormatError
            If the width exceeds :data:`MAX_FLOAT_WIDTH`.
        """
        self._check_width(MAX_FLOAT_WIDTH, "quantize()")
        return self.from_int(self.to_int(x))

    def to_int(self, x: np.ndarray | float) -> np.ndarray:
        """The int64 mantissas of ``x`` quantised into this type (value = mantissa * step)."""
        self._check_width(MAX_INT_WIDTH, "to_int()")
        arr = np.asarray(x, dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            where = np.argwhere(bad)[:5].tolist()
            raise DataError(
                f"cannot quantise to {self}: {int(bad.sum())} of {arr.size} values are NaN or "
                f"infinite (first at index {where})"
            )
        frac = self.frac
        if self.overflow is Overflow.WRAP:
            # Wrapping has period 2**I in value; fmod is exact, and subtracting a multiple of
            # 2**I (itself a multiple of the lsb) commutes with rounding to the lsb grid.
            arr = np.fmod(arr, np.ldexp(1.0, self.integer))
        else:
            # Anything past two lsbs beyond the range overflows whatever the rounding: clamp
            # there so the scaling below cannot overflow float64. Past 52 bits float64 cannot
            # hold int_min - 2 exactly (it would round back into the range), so the margin
            # grows to two float64 spacings at that magnitude.
            margin = 1 << max(1, self.width - 51)
            lo = np.ldexp(float(self.int_min - margin), -frac)
            hi = np.ldexp(float(self.int_max + margin), -frac)
            arr = np.clip(arr, lo, hi)
        scaled = np.ldexp(arr, frac)
        # ldexp loses bits only when the result underflows into subnormals (tiny |x| with a
        # lsb above 1). Such a value rounds like any value of the same sign below half an lsb.
        inexact = np.ldexp(scaled, -frac) != arr
        if inexact.any():
            scaled = np.where(inexact, np.copysign(np.ldexp(1.0, -600), arr), scaled)
        floor = np.floor(scaled)
        # Never form scaled - floor: it is inexact for negative scaled just above an integer
        # (-0.49999999999999994 + 1 rounds to 0.5). Comparisons are exact; floor + 0.5 is
        # exact whenever scaled is not an integer (then |scaled| < 2**52).
        has_rem = scaled != floor
        cmp_half = np.where(has_rem, np.sign(scaled - (floor + 0.5)), -1.0).astype(np.int64)
        mantissa = self._round(floor.astype(np.int64), has_rem, cmp_half)
        return self._saturate(mantissa)

    def from_int(self, mantissa: np.ndarray | int) -> np.ndarray:
        """Values (float64, exact) of int mantissas, which must lie in this type's range."""
        self._check_width(MAX_FLOAT_WIDTH, "from_int()")
        m = np.asarray(mantissa)
        if m.dtype.kind not in "iu":
            raise FormatError(f"{self}.from_int() needs integer mantissas, got dtype {m.dtype}")
        m = m.astype(np.int64)
        if m.size and (m.min() < self.int_min or m.max() > self.int_max):
            raise FormatError(
                f"{self}.from_int(): mantissas must lie in [{self.int_min}, {self.int_max}], "
                f"got [{m.min()}, {m.max()}]"
            )
        return np.ldexp(m.astype(np.float64), -self.frac)

    def quantize_int(self, mantissa: np.ndarray, frac: int) -> np.ndarray:
        """Requantise exact values ``mantissa * 2**-frac`` (int64) into this type.

        Pure integer arithmetic (arithmetic shifts), as the hardware cast between two
        ``ap_fixed`` types does. Returns int64 mantissas of this type.
        """
        self._check_width(MAX_INT_WIDTH, "quantize_int()")
        m = np.asarray(mantissa, dtype=np.int64)
        shift = frac - self.frac
        if shift == 0:
            return self._saturate(m)
        if 0 < shift <= 62 and self.rounding in _SHIFT_ROUNDINGS and m.size:
            # Fast paths (one add and one arithmetic shift), exact while m + 2**shift fits
            # int64. RND_CONV: adding (half - 1) + (bit 0 of the floor) rounds ties to even.
            if -(1 << 61) < int(m.min()) and int(m.max()) < (1 << 61):
                s = np.int64(shift)
                if self.rounding is Rounding.TRN:
                    return self._saturate(m >> s)
                half = np.int64(1 << (shift - 1))
                if self.rounding is Rounding.RND:
                    return self._saturate((m + half) >> s)
                return self._saturate((m + (half - 1) + ((m >> s) & 1)) >> s)
        if shift <= 0:
            # Exact left shift. Shift only what cannot overflow int64: for WRAP the low
            # W - sh bits (the rest wraps away), otherwise in-range mantissas (the rest is
            # replaced by a just-out-of-range mantissa of the same sign, which saturates alike).
            sh = -shift
            if self.overflow is Overflow.WRAP:
                if sh >= self.width:
                    return np.zeros(m.shape, dtype=np.int64)
                low = m & np.int64((1 << (self.width - sh)) - 1)
                return self._saturate(low << np.int64(sh))
            lim_hi = self.int_max >> sh
            lim_lo = -((-self.int_min) >> sh)
            in_range = (m >= lim_lo) & (m <= lim_hi)
            shifted = np.zeros_like(m)
            if sh <= 62:
                shifted = np.where(in_range, m, 0) << np.int64(sh)
            outside = np.where(m > lim_hi, self.int_max + 1, self.int_min - 1)
            return self._saturate(np.where(in_range, shifted, outside).astype(np.int64))
        if shift > 62:
            # Every mantissa is far below one lsb: keep only its sign for rounding purposes.
            floor = np.where(m < 0, -1, 0).astype(np.int64)
            has_rem = m != 0
            cmp_half = np.where(m == 0, -1, np.where(m < 0, 1, -1)).astype(np.int64)
            return self._saturate(self._round(floor, has_rem, cmp_half))
        floor = m >> np.int64(shift)
        rem = m - (floor << np.int64(shift))
        half = np.int64(1) << np.int64(shift - 1)
        cmp_half = np.sign(rem - half).astype(np.int64)
        return self._saturate(self._round(floor, rem != 0, cmp_half))

    def _round(self, floor: np.ndarray, has_rem: np.ndarray, cmp_half: np.ndarray) -> np.ndarray:
        """Round ``floor + rem`` (0 <= rem < 1) to an integer; ``cmp_half = sign(rem - 1/2)``."""
        mode = self.rounding
        negative = floor < 0  # the value floor + rem is negative iff floor < 0
        if mode is Rounding.TRN:
            return floor
        if mode is Rounding.TRN_ZERO:
            return floor + (negative & has_rem)
        tie = cmp_half == 0
        if mode is Rounding.RND:
            tie_up = tie
        elif mode is Rounding.RND_ZERO:
            tie_up = tie & negative
        elif mode is Rounding.RND_INF:
            tie_up = tie & ~negative
        elif mode is Rounding.RND_MIN_INF:
            tie_up = np.zeros_like(tie)
        else:  # RND_CONV: ties to the even neighbour
            tie_up = tie & ((floor & 1) == 1)
        return floor + (cmp_half > 0) + tie_up

    def _saturate(self, m: np.ndarray) -> np.ndarray:
        """Apply the overflow mode to int64 mantissas (returns ``m`` itself when all fit)."""
        lo, hi = self.int_min, self.int_max
        mode = self.overflow
        if m.size:
            mn, mx = int(m.min()), int(m.max())
            sym_lo = -hi if (mode is Overflow.SAT_SYM and self.signed) else lo
            if mn >= sym_lo and mx <= hi:
                return m.astype(np.int64, copy=False)
        if mode is Overflow.WRAP:
            span = np.int64(1) << np.int64(self.width)
            return ((m - lo) % span + lo).astype(np.int64)
        if mode is Overflow.SAT:
            return np.clip(m, lo, hi).astype(np.int64)
        if mode is Overflow.SAT_ZERO:
            return np.where((m < lo) | (m > hi), 0, m).astype(np.int64)
        # SAT_SYM
        sym_lo = -hi if self.signed else lo
        return np.clip(m, sym_lo, hi).astype(np.int64)

    def contains(self, values: np.ndarray) -> bool:
        """True when every value is exactly representable in this type."""
        arr = np.asarray(values, dtype=np.float64)
        if not np.isfinite(arr).all():
            return False
        scaled = np.ldexp(arr, self.frac)
        return bool(
            np.all(scaled == np.floor(scaled))
            and np.all(scaled >= self.int_min)
            and np.all(scaled <= self.int_max)
        )


def round_rational(num: np.ndarray, den: int, rounding: Rounding) -> np.ndarray:
    """``rounding(num / den)`` for an object array of Python ints and ``den > 0`` (exact)."""
    fl = num // den
    rem = num - fl * den
    if rounding == Rounding.RND_CONV:  # half to even
        twice = rem * 2
        up = (twice > den) | ((twice == den) & (fl % 2 == 1))
        return fl + up.astype(object)
    if rounding == Rounding.TRN:  # floor
        return fl
    if rounding == Rounding.TRN_ZERO:
        return fl + ((num < 0) & (rem != 0)).astype(object)
    raise InternalError(f"rounding {rounding} has no exact rational rounding")
