"""The simulator's fast paths against the int64 reference, and its bounded memory.

* ``_requant`` / ``_float_requant`` (float casts between fixed-point types) equal
  ``FixedType.quantize_int`` for every rounding and overflow mode, in float32 and float64,
  including values right at the exact limits and rounding ties.
* ``_quantize_input`` (the float fast path of the input quantiser) equals ``FixedType.to_int``
  on ties, saturation, subnormals, huge values, and refuses NaN alike.
* Fusion (dense/conv + ReLU/Quant in one pass) and chunking change nothing: outputs are equal
  for every memory budget, with and without ``trace``; ``simulate_iter`` streams batches.
* The working memory of ``simulate`` is bounded by the budget, not by N (tracemalloc).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnet.errors import DataError
from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import Conv, Dense, Flatten, HwGraph, Input, MaxPool, Quant, ReLU
from qnet.hw.sim_arith import _requant
from qnet.hw.simulator import (
    _quantize_input,
    chunk_size,
    simulate,
    simulate_int,
    simulate_iter,
)

ROUNDINGS = list(Rounding)
OVERFLOWS = list(Overflow)


@st.composite
def _types(draw: st.DrawFn) -> FixedType:
    signed = draw(st.booleans())
    width = draw(st.integers(2 if signed else 1, 30))
    integer = draw(st.integers(-6, width + 6))
    overflow = draw(st.sampled_from(OVERFLOWS))
    return FixedType(width, integer, signed, draw(st.sampled_from(ROUNDINGS)), overflow)


@settings(max_examples=300, deadline=None)
@given(t=_types(), frac=st.integers(-8, 40), bits=st.integers(1, 54), seed=st.integers(0, 99))
def test_requant_equals_quantize_int(t: FixedType, frac: int, bits: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    hi = (1 << bits) - 1
    lo = -hi - 1 if seed % 3 else 0
    x = rng.integers(lo, hi, 400, endpoint=True, dtype=np.int64)
    shift = frac - t.frac
    if 0 < shift < 40:  # exact ties and their neighbours
        half = 1 << (shift - 1)
        k = rng.integers(lo >> shift, (hi >> shift) + 1, 60)
        ties = np.clip(
            np.concatenate([k * (1 << shift) + d for d in (half - 1, half, half + 1)]), lo, hi
        )
        x = np.concatenate([x, ties])
    x = np.concatenate([x, [lo, hi, 0]]).astype(np.int64)
    want = t.quantize_int(x, frac)
    got = _requant(x, frac, lo, hi, t)
    assert np.array_equal(got.astype(np.int64), want), (t, frac, lo, hi)
    for dtype in (np.float32, np.float64):  # float input (as after a BLAS product)
        limit = 2**24 if dtype is np.float32 else 2**53
        if max(-lo, hi) < limit:
            got = _requant(x.astype(dtype), frac, lo, hi, t)
            assert np.array_equal(got.astype(np.int64), want), (t, frac, dtype)


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("overflow", [Overflow.SAT, Overflow.SAT_SYM, Overflow.WRAP])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantize_input_equals_to_int(rounding: Rounding, overflow: Overflow, dtype: type) -> None:
    rng = np.random.default_rng(0)
    for t in (
        FixedType(8, 0, False, rounding, overflow),
        FixedType(8, 3, True, rounding, overflow),
        FixedType(20, 2, True, rounding, overflow),
        FixedType(40, 20, True, rounding, overflow),
        FixedType(6, 9, True, rounding, overflow),  # lsb 8: frac < 0
    ):
        lsb = t.step
        tiny = float(np.finfo(dtype).smallest_subnormal)
        huge = float(np.finfo(dtype).max) / 3
        ties = (rng.integers(-300, 300, 200) + 0.5) * lsb
        x = np.concatenate(
            [
                rng.uniform(-4 * abs(t.max), 4 * abs(t.max) + 1, 500),
                ties,
                ties + lsb / 4,
                [0.0, -0.0, tiny, -tiny, 1e-30, huge, -huge, np.finfo(dtype).max, t.max, t.min],
            ]
        ).astype(dtype)
        want = t.to_int(x)
        got = _quantize_input(t, x)
        assert np.array_equal(got.astype(np.int64), want), t


def test_quantize_input_refuses_nan_like_to_int() -> None:
    t = FixedType(8, 0, False, Rounding.RND_CONV, Overflow.SAT)
    x = np.array([0.5, np.nan], np.float32)
    with pytest.raises(DataError, match="NaN"):
        _quantize_input(t, x)


# ----------------------------------------------------------------- chunking and fusion
def _cnn() -> HwGraph:
    rng = np.random.default_rng(3)
    rc = dict(rounding=Rounding.RND_CONV, overflow=Overflow.SAT)
    t_in = FixedType(8, 0, False, **rc)
    w1 = rng.integers(-8, 8, (6, 1, 3, 3))
    w2 = rng.integers(-8, 8, (8, 6, 3, 3))
    w3 = rng.integers(-8, 8, (10, 8 * 2 * 2))
    acc = FixedType(20, 8)
    act = FixedType(4, 1, False, **rc)
    return HwGraph(
        (
            Input("in", (), (1, 8, 8), t_in),
            Conv(
                "c1", ("in",), (6, 8, 8), acc, weight=w1, weight_type=FixedType(4, 0),
                bias=rng.integers(-50, 50, 6), bias_type=FixedType(12, 4), acc_type=acc,
                stride=(1, 1), padding=(1, 1),
            ),
            ReLU("r1", ("c1",), (6, 8, 8), act),
            MaxPool("p1", ("r1",), (6, 4, 4), act, kernel=(2, 2), stride=(2, 2)),
            Conv(
                "c2", ("p1",), (8, 4, 4), acc, weight=w2, weight_type=FixedType(4, 0),
                acc_type=acc, stride=(1, 1), padding=(1, 1),
            ),
            ReLU("r2", ("c2",), (8, 4, 4), act),
            Quant("q2", ("r2",), (8, 4, 4), FixedType(3, 1, False, **rc)),
            MaxPool("p2", ("q2",), (8, 2, 2), FixedType(3, 1, False, **rc), kernel=(2, 2), stride=(2, 2)),
            Flatten("f", ("p2",), (32,), FixedType(3, 1, False, **rc)),
            Dense(  # out_type wraps: the float path falls back to int64 after the acc cast
                "fc", ("f",), (10,), FixedType(5, 1, True, Rounding.RND, Overflow.WRAP),
                weight=w3, weight_type=FixedType(4, 0), acc_type=FixedType(24, 12),
            ),
            ReLU("r3", ("fc",), (10,), FixedType(6, 3, False, Rounding.TRN, Overflow.WRAP)),
        )
    )  # fmt: skip


def test_chunking_fusion_and_trace_change_nothing() -> None:
    graph = _cnn()
    x = np.random.default_rng(0).uniform(-0.2, 1.2, (257, 1, 8, 8)).astype(np.float32)
    ref = simulate_int(graph, x, trace=True, memory_budget=1 << 40)  # one chunk, no fusion
    wide = graph.replace("fc", out_type=FixedType(16, 12, True, Rounding.RND, Overflow.WRAP))
    unwrapped = simulate_int(wide, x, trace=True)["fc"]
    assert unwrapped.min() < -16 and unwrapped.max() > 15  # fc's wrap is exercised
    fc = graph["fc"]
    acc = ref["f"].astype(object) @ fc.weight.T.astype(object)  # Python ints, frac 2 + 4
    want = fc.out_type.quantize_int(fc.acc_type.quantize_int(acc.astype(np.int64), 6), 12)
    assert np.array_equal(ref["fc"], want)
    for budget in (1, 50_000, None):
        assert chunk_size(graph, budget) < len(x) or budget is None
        out = simulate_int(graph, x, memory_budget=budget)["r3"]
        assert np.array_equal(out, ref["r3"])
        tr = simulate(graph, x, trace=True, memory_budget=budget)
        assert isinstance(tr, dict) and set(tr) == set(ref)
        for name, m in ref.items():
            assert np.array_equal(tr[name], graph[name].out_type.from_int(m)), name
    streamed = list(simulate_iter(graph, (x[i : i + 100] for i in range(0, len(x), 100))))
    assert np.array_equal(np.concatenate(streamed), graph["r3"].out_type.from_int(ref["r3"]))


def test_memory_is_bounded_by_the_budget_not_by_n() -> None:
    """Peak traced memory beyond the input and output: O(chunk), the same for 4x the inputs."""
    graph = _cnn()
    budget = 2 * 2**20
    peaks = []
    for n in (1_000, 4_000):
        x = np.random.default_rng(1).uniform(0, 1, (n, 1, 8, 8)).astype(np.float32)
        simulate(graph, x[:10], memory_budget=budget)  # warm caches (prepared weights)
        tracemalloc.start()
        out = simulate(graph, x, memory_budget=budget)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peaks.append(peak - out.nbytes)
    assert max(peaks) < 2 * budget, peaks
    assert peaks[1] < 1.5 * peaks[0] + 2**20, peaks  # does not grow with N
