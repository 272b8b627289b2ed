"""Differential test of :class:`qnet.hw.fixed.FixedType` against the real ap_types headers.

hls4ml ships the Xilinx ``ap_fixed`` / ``ap_int`` headers; a C++ harness (``ap_cast.cpp``)
compiled once per session casts the same values to the same types and prints the integer
mantissas, which must equal :meth:`FixedType.to_int` (and, scaled, :meth:`FixedType.quantize`)
on every value. The expected answers come only from the C++ headers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from qnet.hw.fixed import FixedType, Overflow, Rounding

pytestmark = pytest.mark.csim

HERE = Path(__file__).parent
VALUES_PER_TYPE = 10_000

# (width, integer) shapes, cycled over the rounding x overflow combinations: 1-bit types,
# integer < 0, integer > width, widths 1..32 and a few up to 48.
_SHAPES = [
    (1, 1), (1, 0), (1, -2), (1, 3), (2, 1), (2, 2), (3, 5), (3, 0), (4, -2), (4, 4), (5, 2),
    (6, 0), (6, 6), (7, 7), (7, -1), (8, 3), (8, -3), (8, 8), (9, 12), (10, 4), (11, 1),
    (12, 6), (13, 20), (14, -1), (15, 7), (16, 8), (16, 0), (17, 3), (18, 18), (19, 25),
    (20, 10), (21, 2), (22, -5), (23, 11), (24, 12), (25, 30), (26, 26), (27, 9), (28, 14),
    (29, -2), (30, 15), (31, 16), (32, 16), (32, -4), (32, 40), (36, 20), (40, 8), (44, 44),
    (48, 24), (48, 50), (48, -3),
]  # fmt: skip

# Types spelled as C++ integer types: (width, signed).
_INT_TYPES = [(1, True), (2, True), (8, True), (17, True), (32, True), (48, True),
              (1, False), (4, False), (16, False), (33, False), (48, False)]  # fmt: skip


@dataclass(frozen=True)
class _Case:
    """One C++ cast: ``cpp`` spelling of the target, the FixedType that should match it."""

    cpp: str
    fixed: FixedType


def _cpp_fixed(width: int, integer: int, signed: bool, q: Rounding, o: Overflow) -> str:
    # Spelled here, independently of FixedType.__str__ (which is tested elsewhere).
    name = "ap_fixed" if signed else "ap_ufixed"
    return f"{name}<{width},{integer},AP_{q.value},AP_{o.value}>"


def _double_cases() -> list[_Case]:
    cases = []
    combos = [(q, o) for q in Rounding for o in Overflow]
    n = len(_SHAPES)
    for index, (q, o) in enumerate(combos):
        for signed, pick in ((True, [index, index + 28]), (False, [index + 7, index + 40])):
            for shape in pick:
                width, integer = _SHAPES[shape % n]
                if signed and width == 1 and o is Overflow.SAT_SYM:
                    width, integer = 2, integer  # a 1-bit signed type has no symmetric range
                cpp = _cpp_fixed(width, integer, signed, q, o)
                cases.append(_Case(cpp, FixedType(width, integer, signed, q, o)))
    for width, signed in _INT_TYPES:
        cpp = f"ap_int<{width}>" if signed else f"ap_uint<{width}>"
        cases.append(_Case(cpp, FixedType.int_type(width, signed)))
    return cases


# (source width, source integer, source signed), target (C++ spelling, FixedType).
_PAIRS = [
    ((24, 10, True), _cpp_fixed(8, 3, True, Rounding.RND_CONV, Overflow.SAT)),
    ((24, 10, True), _cpp_fixed(8, 3, True, Rounding.RND_CONV, Overflow.SAT_SYM)),
    ((40, 20, True), _cpp_fixed(6, 0, False, Rounding.RND, Overflow.SAT_SYM)),
    ((16, 4, False), _cpp_fixed(5, 2, True, Rounding.TRN_ZERO, Overflow.WRAP)),
    ((20, 5, True), _cpp_fixed(12, 8, True, Rounding.RND_ZERO, Overflow.SAT_ZERO)),
    ((12, 12, True), _cpp_fixed(16, 4, True, Rounding.RND_INF, Overflow.SAT)),
    ((18, -2, True), _cpp_fixed(4, -4, True, Rounding.RND_MIN_INF, Overflow.WRAP)),
    ((30, 25, True), _cpp_fixed(6, 10, True, Rounding.RND_CONV, Overflow.WRAP)),
    ((32, 16, True), _cpp_fixed(32, 16, True, Rounding.TRN, Overflow.SAT)),
    ((48, 24, True), _cpp_fixed(10, 2, False, Rounding.RND_CONV, Overflow.SAT)),
    ((20, 12, True), "ap_int<8>"),
    ((20, 12, True), "ap_uint<6>"),
    ((16, 6, True), _cpp_fixed(1, 1, True, Rounding.RND, Overflow.SAT)),
    ((16, 6, True), _cpp_fixed(8, 3, True, Rounding.TRN_ZERO, Overflow.SAT_SYM)),
    ((16, 30, True), _cpp_fixed(10, -2, True, Rounding.RND, Overflow.SAT)),  # left shift 26
    ((16, 30, True), _cpp_fixed(10, -2, True, Rounding.RND, Overflow.WRAP)),
    ((12, 20, False), _cpp_fixed(24, 20, True, Rounding.RND_CONV, Overflow.WRAP)),
]


def _pair_cases() -> list[tuple[FixedType, _Case]]:
    out = []
    for (sw, si, ss), cpp in _PAIRS:
        source = FixedType(sw, si, ss)
        target = FixedType.parse(cpp)
        out.append((source, _Case(cpp, target)))
    return out


# ---------------------------------------------------------------------------------- values
_SPECIALS = np.array(
    [0.0, -0.0, 1e300, -1e300, 5e-324, -5e-324, 2.2250738585072014e-308,
     -2.2250738585072014e-308, 1e-300, -1e-300, 1.7976931348623157e308, -1.7976931348623157e308,
     1.0, -1.0, 0.5, -0.5, 0.25, -0.25]
)  # fmt: skip


def _values(t: FixedType, rng: np.random.Generator) -> np.ndarray:
    """>= VALUES_PER_TYPE doubles probing ``t``: quarter-lsb grid (ties included) around the
    range ends and zero, ties +- 1 ulp, just inside/outside the range, random values with
    sticky bits, powers of two across the whole double range, zero, -0.0, huge and subnormal.
    """
    lo, hi = t.int_min, t.int_max
    if hi - lo <= 1200:
        ks = np.arange(lo - 4, hi + 5)
    else:
        ks = np.concatenate([
            np.arange(lo - 4, lo + 300), np.arange(hi - 300, hi + 5), np.arange(-300, 301),
            rng.integers(lo, hi, 600, endpoint=True),
        ])  # fmt: skip
    grid = (4 * ks[:, None] + np.arange(4)[None, :]).ravel()  # quarter lsbs: j=2 is a tie
    grid_values = np.ldexp(grid.astype(np.float64), -t.frac - 2)
    ties = np.ldexp((2 * ks + 1).astype(np.float64), -t.frac - 1)
    near_ties = np.concatenate([np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf)])
    bounds = np.array([t.min, t.max, t.min - t.step / 2, t.max + t.step / 2, -t.max])
    near_bounds = np.concatenate(
        [bounds, np.nextafter(bounds, np.inf), np.nextafter(bounds, -np.inf)]
    )
    span = t.max - t.min + t.step
    uniform = rng.uniform(t.min - span, t.max + span, 2500)
    exps = np.arange(-1074, 1024, 3)
    pow2 = np.ldexp(1.0, exps) * np.where(exps % 2 == 0, 1.0, -1.0)
    logs = np.ldexp(rng.uniform(0.5, 1.0, 1000), rng.integers(-1074, 1024, 1000))
    logs *= rng.choice([-1.0, 1.0], 1000)
    parts = [_SPECIALS, grid_values, near_ties, near_bounds, uniform, pow2, -pow2, logs]
    values = np.concatenate(parts)
    missing = VALUES_PER_TYPE - values.size
    if missing > 0:
        values = np.concatenate([values, rng.uniform(t.min - span, t.max + span, missing)])
    return values


def _source_mantissas(source: FixedType, rng: np.random.Generator) -> np.ndarray:
    lo, hi = source.int_min, source.int_max
    if hi - lo < 70_000:
        return np.arange(lo, hi + 1, dtype=np.int64)
    edges = [np.arange(lo, lo + 2000), np.arange(hi - 2000, hi + 1), np.arange(-2000, 2001)]
    # Mantissas near multiples of big powers of two hit the ties and range ends of the target.
    shifts = np.arange(1, source.width - 1)
    base = rng.integers(lo, hi, (shifts.size, 50), endpoint=True)
    aligned = ((base >> shifts[:, None]) << shifts[:, None]).ravel()
    offsets = np.concatenate([aligned + d for d in (-1, 0, 1)])
    offsets = np.clip(offsets, lo, hi)
    random = rng.integers(lo, hi, 5000, endpoint=True)
    return np.concatenate([*edges, offsets, random]).astype(np.int64)


# ---------------------------------------------------------------------------------- harness
@dataclass
class _Harness:
    double_cases: list[_Case]
    double_inputs: list[np.ndarray]
    double_outputs: list[np.ndarray]
    pair_cases: list[tuple[FixedType, _Case]]
    pair_inputs: list[np.ndarray]
    pair_outputs: list[np.ndarray]


def _ap_types_dir() -> Path:
    import hls4ml

    path = Path(os.path.dirname(hls4ml.__file__)) / "templates" / "vivado" / "ap_types"
    if not (path / "ap_fixed.h").is_file():
        pytest.fail(f"hls4ml is installed but ships no ap_types headers at {path}")
    return path


@pytest.fixture(scope="session")
def ap_harness(tmp_path_factory: pytest.TempPathFactory) -> _Harness:
    """Build the C++ harness once, run every case once, return inputs and C++ outputs."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed: cannot compile the ap_types differential harness")
    build = tmp_path_factory.mktemp("ap_cast")
    double_cases = _double_cases()
    pair_cases = _pair_cases()
    lines = []
    for case in double_cases:
        t = case.fixed
        lines.append(f"cast_double<{case.cpp}, {t.width}, {str(t.signed).lower()}>();")
    for source, case in pair_cases:
        t, ss = case.fixed, "ap_fixed" if source.signed else "ap_ufixed"
        src = f"{ss}<{source.width},{source.integer}>"
        lines.append(
            f"cast_fixed<{src}, {source.width}, {case.cpp}, {t.width}, {str(t.signed).lower()}>();"
        )
    (build / "ap_cast_cases.inc").write_text("\n".join(lines) + "\n")
    exe = build / "ap_cast"
    start = time.perf_counter()
    subprocess.run(
        [gxx, "-std=c++14", "-O0", "-w", f"-I{_ap_types_dir()}", f"-I{build}",
         str(HERE / "ap_cast.cpp"), "-o", str(exe)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    compile_s = time.perf_counter() - start

    rng = np.random.default_rng(20240611)
    double_inputs = [_values(c.fixed, rng) for c in double_cases]
    pair_inputs = [_source_mantissas(s, rng) for s, _ in pair_cases]
    with open(build / "in.bin", "wb") as f:
        for arr in double_inputs + pair_inputs:
            np.array([arr.size], dtype=np.int64).tofile(f)
            arr.tofile(f)
    start = time.perf_counter()
    # capture_output: the headers print spurious "assign NaN" warnings for some finite inputs.
    subprocess.run(
        [str(exe), str(build / "in.bin"), str(build / "out.bin")], check=True, capture_output=True
    )
    run_s = time.perf_counter() - start
    flat = np.fromfile(build / "out.bin", dtype=np.int64)
    sizes = [a.size for a in double_inputs + pair_inputs]
    if flat.size != sum(sizes):
        pytest.fail(f"ap_cast wrote {flat.size} results, expected {sum(sizes)}")
    outputs = np.split(flat, np.cumsum(sizes)[:-1])
    print(f"ap_cast: compile {compile_s:.1f} s, run {run_s:.2f} s")
    return _Harness(
        double_cases, double_inputs, outputs[: len(double_cases)],
        pair_cases, pair_inputs, outputs[len(double_cases):],
    )  # fmt: skip


# ---------------------------------------------------------------------------------- tests
def _mismatch_report(case: str, x: np.ndarray, got: np.ndarray, want: np.ndarray) -> str:
    bad = np.flatnonzero(got != want)
    rows = [f"  x={x[i]!r}: FixedType {got[i]}, C++ {want[i]}" for i in bad[:8]]
    return f"{case}: {bad.size} of {x.size} mismatches\n" + "\n".join(rows)


def test_cases_cover_every_mode_and_shape(ap_harness: _Harness) -> None:
    types = [c.fixed for c in ap_harness.double_cases]
    assert len(types) >= 40
    for signed in (True, False):
        combos = {(t.rounding, t.overflow) for t in types if t.signed is signed}
        assert len(combos) == 28, f"signed={signed}: only {len(combos)} of 28 mode combos"
    assert any(t.integer < 0 for t in types) and any(t.integer > t.width for t in types)
    assert set(range(1, 33)) <= {t.width for t in types}
    assert max(t.width for t in types) == 48
    assert min(a.size for a in ap_harness.double_inputs) >= VALUES_PER_TYPE
    assert len(ap_harness.pair_cases) >= 12


def _ap_int_double_defect(case: _Case, x: np.ndarray) -> np.ndarray:
    """Where the headers' ``ap_int_base(double)`` is wrong: it truncates the magnitude toward
    zero and negates afterwards, but a magnitude below 0.5 becomes -1 before the negation, so
    ``ap_int<W>(x)`` is +1 for every -0.5 < x < 0 (instead of 0). ``ap_fixed`` and
    ``ap_fixed -> ap_int`` casts are not affected; FixedType deliberately does not copy this.
    """
    if not case.cpp.startswith(("ap_int<", "ap_uint<")):
        return np.zeros(x.shape, dtype=bool)
    return (x < 0) & (x > -0.5)


def test_to_int_and_quantize_match_ap_types(ap_harness: _Harness) -> None:
    reports = []
    compared = defect_count = 0
    for case, x, want in zip(
        ap_harness.double_cases, ap_harness.double_inputs, ap_harness.double_outputs, strict=True
    ):
        got = case.fixed.to_int(x)
        defect = _ap_int_double_defect(case, x)
        if defect.any():
            # Pin the known header defect so a header change is noticed, then exclude it.
            one = -1 if case.fixed.signed and case.fixed.width == 1 else 1
            if not (np.all(want[defect] == one) and np.all(got[defect] == 0)):
                reports.append(f"{case.cpp}: the ap_int(double) defect changed shape")
            defect_count += int(defect.sum())
            x, got, want = x[~defect], got[~defect], want[~defect]
        compared += x.size
        if not np.array_equal(got, want):
            reports.append(_mismatch_report(case.cpp, x, got, want))
            continue
        quantized = case.fixed.quantize(x)
        expected = np.ldexp(want.astype(np.float64), -case.fixed.frac)
        if not np.array_equal(quantized, expected):
            reports.append(f"{case.cpp}: quantize() differs from to_int() * step")
    print(
        f"compared {len(ap_harness.double_cases)} types, {compared} values "
        f"(+{defect_count} excluded: ap_int(double) header defect on -0.5 < x < 0)"
    )
    assert not reports, "\n".join(reports)


def test_quantize_int_matches_ap_fixed_to_ap_fixed_cast(ap_harness: _Harness) -> None:
    reports = []
    compared = 0
    for (source, case), m, want in zip(
        ap_harness.pair_cases, ap_harness.pair_inputs, ap_harness.pair_outputs, strict=True
    ):
        got = case.fixed.quantize_int(m, source.frac)
        compared += m.size
        if not np.array_equal(got, want):
            reports.append(_mismatch_report(f"{source} -> {case.cpp}", m, got, want))
    print(f"compared {len(ap_harness.pair_cases)} type pairs, {compared} mantissas")
    assert not reports, "\n".join(reports)
