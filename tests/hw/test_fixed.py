"""Property tests of :class:`qnet.hw.fixed.FixedType` (exactness, spelling, errors).

The bit-exact comparison against the real ap_types headers lives in ``test_fixed_diff.py``;
here the properties are checked against an exact rational reference written independently.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qnet.errors import DataError, FormatError
from qnet.hw.fixed import FixedType, Overflow, Rounding

SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def fixed_types(draw: st.DrawFn, max_width: int = 48) -> FixedType:
    width = draw(st.integers(1, max_width))
    integer = draw(st.integers(-8, width + 8))
    signed = draw(st.booleans())
    rounding = draw(st.sampled_from(Rounding))
    overflows = [o for o in Overflow if not (signed and width == 1 and o is Overflow.SAT_SYM)]
    overflow = draw(st.sampled_from(overflows))
    return FixedType(width, integer, signed, rounding, overflow)


@st.composite
def probe_values(draw: st.DrawFn, t: FixedType) -> np.ndarray:
    """Arbitrary finite doubles mixed with quarter-lsb points (ties) around the range."""
    arbitrary = draw(
        hnp.arrays(np.float64, st.integers(0, 20), elements=st.floats(allow_nan=False,
                   allow_infinity=False, allow_subnormal=True))
    )  # fmt: skip
    quarters = draw(
        st.lists(st.integers(4 * t.int_min - 16, 4 * t.int_max + 16), min_size=0, max_size=20)
    )
    grid = np.ldexp(np.array(quarters, dtype=np.float64), -t.frac - 2)
    return np.concatenate([arbitrary, grid])


def _reference_to_int(t: FixedType, x: float) -> int:
    """ap_fixed semantics on exact rationals: round to the lsb grid, then overflow."""
    v = Fraction(x) * Fraction(2) ** t.frac
    floor = math.floor(v)
    rem = v - floor
    half = Fraction(1, 2)
    neg = v < 0
    if t.rounding is Rounding.TRN:
        m = floor
    elif t.rounding is Rounding.TRN_ZERO:
        m = floor + (1 if neg and rem else 0)
    elif rem != half:
        m = floor + (1 if rem > half else 0)
    else:  # exact tie
        m = (
            floor
            + {
                Rounding.RND: 1,
                Rounding.RND_ZERO: 1 if neg else 0,
                Rounding.RND_INF: 0 if neg else 1,
                Rounding.RND_MIN_INF: 0,
                Rounding.RND_CONV: floor % 2,
            }[t.rounding]
        )
    lo, hi = t.int_min, t.int_max
    if t.overflow is Overflow.SAT_SYM and t.signed:
        # ap_fixed's AP_SAT_SYM never yields -2**(W-1), even when rounding lands on it
        # (the differential test against the ap_types headers shows this).
        lo = -hi
    if lo <= m <= hi:
        return m
    if t.overflow is Overflow.WRAP:
        return (m - lo) % (1 << t.width) + lo
    if t.overflow is Overflow.SAT_ZERO:
        return 0
    return min(max(m, lo), hi)


# ----------------------------------------------------------------------------- exactness
@SETTINGS
@given(data=st.data(), t=fixed_types(max_width=62))
def test_to_int_matches_exact_rational_reference(data: st.DataObject, t: FixedType) -> None:
    x = data.draw(probe_values(t))
    got = t.to_int(x)
    want = np.array([_reference_to_int(t, float(v)) for v in x], dtype=np.int64)
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(data=st.data(), t=fixed_types())
def test_quantize_is_idempotent_and_exact(data: st.DataObject, t: FixedType) -> None:
    x = data.draw(probe_values(t))
    q = t.quantize(x)
    np.testing.assert_array_equal(t.quantize(q), q)
    assert t.contains(q)
    # from_int(to_int(x)) is quantize(x), and to_int of an in-type value is its mantissa.
    m = t.to_int(x)
    np.testing.assert_array_equal(t.from_int(m), q)
    np.testing.assert_array_equal(t.to_int(q), m)


@SETTINGS
@given(data=st.data(), t=fixed_types())
def test_values_already_in_the_type_are_unchanged(data: st.DataObject, t: FixedType) -> None:
    m = np.array(data.draw(st.lists(st.integers(t.int_min, t.int_max), max_size=30)), np.int64)
    m = np.concatenate([m, [t.int_min, t.int_max, 0 if t.int_min <= 0 else t.int_min]])
    if t.overflow is Overflow.SAT_SYM and t.signed:
        m = m[m != t.int_min]  # the one value SAT_SYM moves: -2**(W-1) becomes -max
    values = np.ldexp(m.astype(np.float64), -t.frac)
    np.testing.assert_array_equal(t.quantize(values), values)
    np.testing.assert_array_equal(t.to_int(values), m)
    np.testing.assert_array_equal(t.from_int(m), values)


@SETTINGS
@given(data=st.data(), t=fixed_types())
def test_quantize_is_monotonic(data: st.DataObject, t: FixedType) -> None:
    assume(t.overflow is not Overflow.WRAP)
    x = np.sort(data.draw(probe_values(t)))
    q = t.quantize(x)
    if t.overflow is Overflow.SAT_ZERO:
        # Overflowing values become 0 by design, so only in-range values keep the order.
        unclamped = FixedType(t.width + 2, t.integer + 2, t.signed, t.rounding, Overflow.SAT)
        r = unclamped.quantize(x)
        q = q[(r >= t.min) & (r <= t.max)]
    assert np.all(np.diff(q) >= 0), f"{t}: not monotonic"


def test_sat_zero_is_not_monotonic_on_overflow() -> None:
    t = FixedType(4, 2, True, Rounding.TRN, Overflow.SAT_ZERO)  # range [-2, 1.75]
    np.testing.assert_array_equal(t.quantize([1.75, 2.0, -2.0, -2.25]), [1.75, 0.0, -2.0, 0.0])


@SETTINGS
@given(data=st.data(), source=fixed_types(max_width=40), t=fixed_types(max_width=40))
def test_quantize_int_equals_quantize_of_exact_values(
    data: st.DataObject, source: FixedType, t: FixedType
) -> None:
    m = data.draw(st.lists(st.integers(source.int_min, source.int_max), min_size=1, max_size=30))
    m = np.array(m + [source.int_min, source.int_max], dtype=np.int64)
    values = np.ldexp(m.astype(np.float64), -source.frac)  # exact: |m| < 2**40
    np.testing.assert_array_equal(t.quantize_int(m, source.frac), t.to_int(values))


def test_quantize_int_left_shifts_past_int64_saturate_or_wrap_exactly() -> None:
    big = np.array([1, -1, 0, 3, 1 << 40], dtype=np.int64)
    sat = FixedType(8, 3, True, Rounding.TRN, Overflow.SAT)
    np.testing.assert_array_equal(sat.quantize_int(big, -60), [127, -128, 0, 127, 127])
    np.testing.assert_array_equal(FixedType(8, 3).quantize_int(big, -60), [0, 0, 0, 0, 0])
    wrap = FixedType(8, 3)  # lsb 1/32, range [-4, 4)
    np.testing.assert_array_equal(wrap.quantize_int(np.array([5, -3]), 2), [40, -24])
    np.testing.assert_array_equal(wrap.quantize_int(np.array([17, -5]), 0), [32, 96])
    sym = FixedType(4, 4, True, Rounding.TRN, Overflow.SAT_SYM)
    np.testing.assert_array_equal(sym.quantize_int(np.array([-1, 1, 0]), -3), [-7, 7, 0])


@pytest.mark.parametrize(
    ("t", "x", "want"),
    [
        # Ties of every rounding mode, checked by hand: lsb 0.25, values +-0.125 and +-0.375.
        (FixedType(8, 6, True, Rounding.RND), [0.125, -0.125, 0.375, -0.375], [1, 0, 2, -1]),
        (FixedType(8, 6, True, Rounding.RND_ZERO), [0.125, -0.125, 0.375, -0.375], [0, 0, 1, -1]),
        (FixedType(8, 6, True, Rounding.RND_INF), [0.125, -0.125, 0.375, -0.375], [1, -1, 2, -2]),
        (FixedType(8, 6, True, Rounding.RND_MIN_INF), [0.125, -0.125, 0.375, -0.375],
         [0, -1, 1, -2]),
        (FixedType(8, 6, True, Rounding.RND_CONV), [0.125, -0.125, 0.375, -0.375], [0, 0, 2, -2]),
        (FixedType(8, 6, True, Rounding.TRN), [0.2, -0.2, 0.3, -0.3], [0, -1, 1, -2]),
        (FixedType(8, 6, True, Rounding.TRN_ZERO), [0.2, -0.2, 0.3, -0.3], [0, 0, 1, -1]),
        # Just below half an lsb in magnitude: rounds to 0 in every nearest mode.
        (FixedType(8, 8, True, Rounding.RND_INF), [-0.49999999999999994], [0]),
        (FixedType(8, 8, True, Rounding.RND_MIN_INF), [-0.49999999999999994], [0]),
        # Saturation: SAT_SYM never produces -2**(W-1); unsigned SAT_SYM is SAT.
        (FixedType(4, 4, True, Rounding.TRN, Overflow.SAT_SYM), [-8.0, -100.0, 100.0], [-7, -7, 7]),
        (FixedType(4, 4, False, Rounding.TRN, Overflow.SAT_SYM), [-3.0, 100.0], [0, 15]),
        (FixedType(4, 4, True, Rounding.TRN, Overflow.WRAP), [8.0, -9.0, 1e300], [-8, 7, 0]),
        (FixedType(4, 4, False, Rounding.TRN, Overflow.WRAP), [-1.0, 17.0], [15, 1]),
        # ap_int follows C: truncation toward zero, then wrap.
        (FixedType.int_type(8), [-2.5, 2.5, 128.0, -129.7], [-2, 2, -128, 127]),
        (FixedType.int_type(1), [0.0, 1.0, -1.0], [0, -1, -1]),
    ],
)  # fmt: skip
def test_hand_checked_examples(t: FixedType, x: list[float], want: list[int]) -> None:
    np.testing.assert_array_equal(t.to_int(x), want)


# ----------------------------------------------------------------------------- spelling
@pytest.mark.parametrize(
    ("text", "want", "ap", "hls"),
    [
        ("ap_fixed<8,3,AP_RND_CONV,AP_SAT>", FixedType(8, 3, True, Rounding.RND_CONV, Overflow.SAT),
         "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", "fixed<8,3,RND_CONV,SAT>"),
        ("ap_fixed<8,3>", FixedType(8, 3), "ap_fixed<8,3>", "fixed<8,3>"),
        ("ap_ufixed<6,0>", FixedType(6, 0, False), "ap_ufixed<6,0>", "ufixed<6,0>"),
        ("ap_int<8>", FixedType(8, 8, True, Rounding.TRN_ZERO, Overflow.WRAP), "ap_int<8>",
         "int<8>"),
        ("ap_uint<4>", FixedType(4, 4, False, Rounding.TRN_ZERO, Overflow.WRAP), "ap_uint<4>",
         "uint<4>"),
        ("fixed<8,3,RND_CONV,SAT,0>", FixedType(8, 3, True, Rounding.RND_CONV, Overflow.SAT),
         "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", "fixed<8,3,RND_CONV,SAT>"),
        ("ufixed<6,0,RND,SAT_SYM>", FixedType(6, 0, False, Rounding.RND, Overflow.SAT_SYM),
         "ap_ufixed<6,0,AP_RND,AP_SAT_SYM>", "ufixed<6,0,RND,SAT_SYM>"),
        ("int<8>", FixedType.int_type(8), "ap_int<8>", "int<8>"),
        ("uint<4>", FixedType.int_type(4, signed=False), "ap_uint<4>", "uint<4>"),
        (" ap_fixed< 16 , -2 , AP_TRN_ZERO , AP_SAT_ZERO , 0 > ",
         FixedType(16, -2, True, Rounding.TRN_ZERO, Overflow.SAT_ZERO),
         "ap_fixed<16,-2,AP_TRN_ZERO,AP_SAT_ZERO>", "fixed<16,-2,TRN_ZERO,SAT_ZERO>"),
        ("ap_fixed<8,8>", FixedType(8, 8), "ap_fixed<8,8>", "fixed<8,8>"),  # floors: not ap_int
    ],
)  # fmt: skip
def test_parse_and_str(text: str, want: FixedType, ap: str, hls: str) -> None:
    t = FixedType.parse(text)
    assert t == want
    assert str(t) == ap and t.ap_str() == ap
    assert t.hls4ml_str() == hls
    assert FixedType.parse(ap) == t and FixedType.parse(hls) == t


@SETTINGS
@given(t=fixed_types(max_width=64))
def test_parse_str_round_trip(t: FixedType) -> None:
    assert FixedType.parse(str(t)) == t
    assert FixedType.parse(t.hls4ml_str()) == t
    assert FixedType.parse(str(FixedType.parse(str(t)))) == t


# ----------------------------------------------------------------------------- errors
def test_nan_and_inf_raise_data_error_naming_count_and_place() -> None:
    t = FixedType(8, 3, True, Rounding.RND_CONV, Overflow.SAT)
    x = np.zeros((3, 4))
    x[1, 2] = np.nan
    x[2, 0] = -np.inf
    with pytest.raises(DataError, match="2 of 12") as info:
        t.to_int(x)
    msg = str(info.value)
    assert "[1, 2]" in msg and "NaN" in msg and str(t) in msg
    with pytest.raises(DataError, match="1 of 1"):
        t.quantize(np.inf)


@pytest.mark.parametrize(
    ("t", "method"),
    [(FixedType(54, 10), "quantize"), (FixedType(54, 10), "from_int"), (FixedType(63, 0), "to_int"),
     (FixedType(63, 0), "quantize_int")],
)  # fmt: skip
def test_too_wide_raises_format_error(t: FixedType, method: str) -> None:
    arg = np.zeros(3, dtype=np.int64) if method in ("from_int", "quantize_int") else [0.0]
    args = (arg, 0) if method == "quantize_int" else (arg,)
    with pytest.raises(FormatError, match="widths up to"):
        getattr(t, method)(*args)


@pytest.mark.parametrize(
    "text",
    ["ap_fixed<8>", "ap_fixed<8,3,AP_FOO>", "ap_fixed<8,3,AP_RND,AP_BAR>", "ap_fix<8,3>",
     "ap_int<8,3>", "ap_fixed<a,3>", "float", "", "ap_fixed<8,3", "ap_fixed<8,3,AP_RND,AP_SAT,0,1>",
     "ap_fixed<0,0>", "ap_uint<0>", "ap_fixed<8,3.5>", "ap_fixed<1,1,AP_TRN,AP_SAT_SYM>",
     "std::vector<int>"],
)  # fmt: skip
def test_bad_spellings_raise_format_error(text: str) -> None:
    with pytest.raises(FormatError):
        FixedType.parse(text)


def test_saturation_bits_other_than_zero_raise_format_error() -> None:
    with pytest.raises(FormatError, match="saturation bits"):
        FixedType.parse("ap_fixed<8,3,AP_RND,AP_SAT,1>")
    with pytest.raises(FormatError, match="saturation bits"):
        FixedType.parse("fixed<8,3,RND_CONV,SAT,2>")
    assert FixedType.parse("ap_fixed<8,3,AP_RND,AP_SAT,0>") == FixedType(
        8, 3, True, Rounding.RND, Overflow.SAT
    )


@pytest.mark.parametrize(
    "kwargs",
    [dict(width=0, integer=0), dict(width=8.0, integer=3), dict(width=8, integer=True),
     dict(width=8, integer=3, signed="yes"), dict(width=8, integer=3, rounding="AP_NOPE"),
     dict(width=8, integer=3, overflow=3)],
)  # fmt: skip
def test_bad_fields_raise_format_error(kwargs: dict) -> None:
    with pytest.raises(FormatError):
        FixedType(**kwargs)


def test_one_bit_signed_sat_sym_is_refused_however_spelled() -> None:
    with pytest.raises(FormatError, match="symmetric"):
        FixedType(1, 1, True, Rounding.TRN, Overflow.SAT_SYM)
    with pytest.raises(FormatError, match="symmetric"):
        FixedType(1, 1, True, "AP_TRN", "AP_SAT_SYM")  # type: ignore[arg-type]
    assert FixedType(1, 1, False, "TRN", "SAT_SYM").overflow is Overflow.SAT_SYM  # type: ignore[arg-type]


def test_non_string_parse_and_non_integer_mantissas_raise_format_error() -> None:
    with pytest.raises(FormatError):
        FixedType.parse(8)  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="integer mantissas"):
        FixedType(8, 3).from_int(np.array([0.5]))
    with pytest.raises(FormatError, match="mantissas must lie in"):
        FixedType(4, 2).from_int(np.array([8]))
