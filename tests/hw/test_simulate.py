"""The simulator against an independent reference written with Python integers.

The reference loops over every output element and sums Python ints (unbounded, exact), so it
shares no code with the simulator's BLAS / im2col / int64 paths; only the final cast uses
``FixedType.quantize_int``, which tests/hw/test_fixed_diff.py checks against the ap_types headers.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import Add, AvgPool, Conv, Dense, HwGraph, Input, MultiThreshold, Quant
from qnet.hw.simulator import simulate, simulate_int

RND = dict(rounding=Rounding.RND_CONV, overflow=Overflow.SAT)


def ref_conv(x: np.ndarray, layer: Conv, in_type: FixedType) -> np.ndarray:
    """Exact Python-int convolution, then the acc and out casts."""
    w = layer.weight.astype(object)
    n, c = x.shape[:2]
    pads = [(0, 0), (0, 0)] + [(p, p) for p in layer.padding]
    xp = np.pad(x.astype(object), pads, constant_values=0)
    out_sp = layer.out_shape[1:]
    prod_frac = in_type.frac + layer.weight_type.frac
    frac = max(prod_frac, layer.bias_type.frac) if layer.bias is not None else prod_frac
    acc = np.zeros((n, layer.out_features, *out_sp), dtype=object)
    for o in range(layer.out_features):
        for pos in itertools.product(*(range(s) for s in out_sp)):
            idx = tuple(
                slice(p * s, p * s + k)
                for p, s, k in zip(pos, layer.stride, layer.kernel, strict=True)
            )
            window = xp[(slice(None), slice(None), *idx)]
            total = (window * w[o]).reshape(n, -1).sum(axis=1) * (1 << (frac - prod_frac))
            if layer.bias is not None:
                total = total + int(layer.bias[o]) * (1 << (frac - layer.bias_type.frac))
            acc[(slice(None), o, *pos)] = total
    acc_m = layer.acc_type.quantize_int(acc.astype(np.int64), frac)
    return layer.out_type.quantize_int(acc_m, layer.acc_type.frac)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), (2, 0)])
def test_conv_matches_python_int_reference(dims: int, stride: int, padding: int) -> None:
    rng = np.random.default_rng(dims * 10 + stride * 3 + padding)
    in_type = FixedType(6, 2, True, **RND)
    spatial = (7,) * dims
    k = (3,) * dims
    out_sp = tuple((s + 2 * padding - kk) // stride + 1 for s, kk in zip(spatial, k, strict=True))
    acc = FixedType(24, 12)
    conv = Conv(
        "conv",
        ("in",),
        (3, *out_sp),
        FixedType(8, 3, True, **RND),
        weight=rng.integers(-8, 8, (3, 2, *k)),
        weight_type=FixedType(4, 1),
        bias=rng.integers(-300, 300, 3),
        bias_type=FixedType(12, 0),
        acc_type=acc,
        stride=(stride,) * dims,
        padding=(padding,) * dims,
    )
    graph = HwGraph((Input("in", (), (2, *spatial), in_type), conv))
    x = rng.normal(0, 2, (200, 2, *spatial))
    x_m = in_type.to_int(x)
    expected = ref_conv(x_m, conv, in_type)
    got = simulate_int(graph, x)["conv"]
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(simulate(graph, x), conv.out_type.from_int(expected))


def test_dense_int64_path_beyond_float64() -> None:
    """Bounds past 2**53 take the exact int64 path; Python ints agree to the last bit."""
    rng = np.random.default_rng(5)
    in_type = FixedType(30, 30)
    w = rng.integers(-(2**27), 2**27, (4, 16))
    acc = FixedType(62, 62)
    dense = Dense("fc", ("in",), (4,), acc, weight=w, weight_type=FixedType(28, 28), acc_type=acc)
    graph = HwGraph((Input("in", (), (16,), in_type), dense))
    x = rng.integers(-(2**29), 2**29, (64, 16)).astype(np.float64)
    bound = int(np.abs(x).max()) * int(np.abs(w).sum(axis=1).max())
    assert bound > 2**53, "the test must exercise the int64 path"
    expected = np.array(
        [
            [sum(int(a) * int(b) for a, b in zip(row, wr, strict=True)) for wr in w]
            for row in x.astype(np.int64)
        ],
        dtype=object,
    ).astype(np.int64)
    np.testing.assert_array_equal(simulate_int(graph, x)["fc"], expected)


def test_avgpool_add_quant_and_thresholds() -> None:
    rng = np.random.default_rng(2)
    t_in = FixedType(8, 4, True, **RND)
    avg_out = FixedType(10, 4, True, **RND)
    graph = HwGraph(
        (
            Input("in", (), (2, 4, 4), t_in),
            AvgPool("avg", ("in",), (2, 2, 2), avg_out, kernel=(2, 2), stride=(2, 2)),
            Quant("q", ("in",), (2, 4, 4), FixedType(4, 2, True, **RND)),
            MultiThreshold(
                "thr",
                ("q",),
                (2, 4, 4),
                FixedType(3, 3, False),
                thresholds=np.array([[-4, 0, 3], [-1, -1, 5]]),
                increasing=[True, False],
            ),
        )
    )
    x = rng.normal(0, 3, (300, 2, 4, 4))
    tr = simulate_int(graph, x, trace=True)
    xm = t_in.to_int(x)
    # average: exact window sum over 4 values = frac + 2 bits
    sums = xm.reshape(300, 2, 2, 2, 2, 2).sum(axis=(3, 5))
    np.testing.assert_array_equal(tr["avg"], avg_out.quantize_int(sums, t_in.frac + 2))
    q = FixedType(4, 2, True, **RND).quantize_int(xm, t_in.frac)
    np.testing.assert_array_equal(tr["q"], q)
    expected = np.empty_like(q)
    for c, (row, inc) in enumerate(zip([[-4, 0, 3], [-1, -1, 5]], [True, False], strict=True)):
        v = q[:, c]
        expected[:, c] = sum((v >= t) if inc else (v < t) for t in row)
    np.testing.assert_array_equal(tr["thr"], expected)


def test_add_aligns_binary_points() -> None:
    a_t, out_t = FixedType(8, 3, True, **RND), FixedType(12, 5, True, **RND)
    graph = HwGraph(
        (
            Input("in", (), (5,), a_t),
            Quant("coarse", ("in",), (5,), FixedType(6, 4, True, **RND)),
            Add("sum", ("in", "coarse"), (5,), out_t),
        )
    )
    x = np.random.default_rng(3).normal(0, 2, (100, 5))
    tr = simulate(graph, x, trace=True)
    np.testing.assert_array_equal(tr["sum"], out_t.quantize(tr["in"] + tr["coarse"]))
