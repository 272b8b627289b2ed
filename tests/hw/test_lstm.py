"""The LSTM hardware layer and its simulator, against an independent scalar reference."""

from __future__ import annotations

import numpy as np
import pytest

from qnet.errors import FormatError
from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import HwGraph, Input
from qnet.hw.lstm import LSTM
from qnet.hw.simulator import simulate, simulate_int

RC, SAT = Rounding.RND_CONV, Overflow.SAT


def _round_half_even_shift(m: int, shift: int) -> int:
    """round(m / 2**shift), ties to even, with Python's exact integers."""
    if shift <= 0:
        return m << -shift
    q, r = divmod(m, 1 << shift)
    half = 1 << (shift - 1)
    if r > half or (r == half and q % 2 == 1):
        q += 1
    return q


def _cast(m: int, frac: int, t: FixedType) -> int:
    v = _round_half_even_shift(m, frac - t.frac)
    return min(max(v, t.int_min), t.int_max)


def _reference(layer: LSTM, x: np.ndarray, in_t: FixedType) -> np.ndarray:
    """Scalar Python re-implementation of the cell (independent of FixedType.quantize_int)."""
    hid = layer.hidden_size
    out = []
    for seq in x.tolist():
        h, c = [0] * hid, [0] * hid
        hs = []
        for xt in seq:
            acts = []
            for k in range(4):
                wt, ut = layer.input_weight_types[k], layer.hidden_weight_types[k]
                bt = layer.bias_types[k]
                frac = max(in_t.frac + wt.frac, layer.out_type.frac + ut.frac, bt.frac)
                gate = []
                for j in range(hid):
                    acc = int(layer.bias[k, j]) << (frac - bt.frac)
                    acc += sum(
                        int(w) * v for w, v in zip(layer.input_weight[k, j], xt, strict=True)
                    ) << (frac - in_t.frac - wt.frac)
                    acc += sum(
                        int(w) * v for w, v in zip(layer.hidden_weight[k, j], h, strict=True)
                    ) << (frac - layer.out_type.frac - ut.frac)
                    pre = _cast(acc, frac, layer.gate_types[k])
                    gate.append(int(layer.gate_tables[k, pre - layer.gate_types[k].int_min]))
                acts.append(gate)
            i, f, g, o = acts
            at, ct = layer.act_types, layer.cell_type
            for j in range(hid):
                fc = _cast(f[j] * c[j], at[1].frac + ct.frac, ct)
                ig = _cast(i[j] * g[j], at[0].frac + at[2].frac, ct)
                c[j] = _cast(fc + ig, ct.frac, ct)
                tc = int(layer.tanh_table[c[j] - ct.int_min])
                h[j] = _cast(o[j] * tc, at[3].frac + layer.tanh_type.frac, layer.out_type)
            hs.append(list(h))
        out.append(hs if layer.return_sequences else h)
    return np.array(out, dtype=np.int64)


def _random_layer(rng: np.random.Generator, return_sequences: bool, steps: int = 5) -> LSTM:
    f_in, hid = 3, 4
    gate_t = FixedType(6, 3, True, RC, SAT)
    sig_t = FixedType(6, 0, False, RC, SAT)
    tanh_t = FixedType(6, 1, True, RC, SAT)
    cell_t = FixedType(6, 2, True, RC, SAT)
    out_t = FixedType(4, 1, True, RC, SAT)
    wt = [FixedType(4, int(rng.integers(0, 3))) for _ in range(4)]
    ut = [FixedType(4, int(rng.integers(0, 3))) for _ in range(4)]
    bt = [FixedType(10, 4) for _ in range(4)]
    # Random monotone-ish tables: any int table in range is a valid layer.
    sig_table = np.sort(rng.integers(0, 64, size=64))
    tanh_table = np.sort(rng.integers(-32, 32, size=64))
    tables = np.stack([sig_table, sig_table[::-1].copy(), tanh_table, sig_table])
    acc_t = [FixedType(20, 8) for _ in range(4)]
    return LSTM(
        name="lstm",
        inputs=("x",),
        out_shape=(steps, hid) if return_sequences else (hid,),
        out_type=out_t,
        input_weight=rng.integers(-8, 8, size=(4, hid, f_in)),
        hidden_weight=rng.integers(-8, 8, size=(4, hid, hid)),
        input_weight_types=tuple(wt),
        hidden_weight_types=tuple(ut),
        bias=rng.integers(-512, 512, size=(4, hid)),
        bias_types=tuple(bt),
        acc_types=tuple(acc_t),
        gate_types=(gate_t,) * 4,
        act_types=(sig_t, sig_t, tanh_t, sig_t),
        gate_tables=tables,
        cell_type=cell_t,
        tanh_type=tanh_t,
        tanh_table=np.sort(rng.integers(-32, 32, size=64)),
        return_sequences=return_sequences,
    )


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simulator_equals_scalar_reference(seed: int, return_sequences: bool) -> None:
    rng = np.random.default_rng(seed)
    steps = 5
    layer = _random_layer(rng, return_sequences, steps)
    in_t = FixedType(5, 1, True, RC, SAT)
    graph = HwGraph((Input("x", (), (steps, 3), in_t), layer))
    x = rng.uniform(-1.3, 1.3, size=(60, steps, 3))
    got = simulate_int(graph, x)["lstm"]
    want = _reference(layer, in_t.to_int(x), in_t)
    np.testing.assert_array_equal(got, want)
    values = simulate(graph, x)
    np.testing.assert_array_equal(values, layer.out_type.from_int(want))


def test_save_load_roundtrip(tmp_path) -> None:
    rng = np.random.default_rng(3)
    layer = _random_layer(rng, True)
    in_t = FixedType(5, 1, True, RC, SAT)
    graph = HwGraph((Input("x", (), (5, 3), in_t), layer))
    path = graph.save(tmp_path / "g.npz")
    loaded = HwGraph.load(path)
    x = rng.uniform(-1, 1, size=(10, 5, 3))
    np.testing.assert_array_equal(simulate(loaded, x), simulate(graph, x))
    assert loaded["lstm"].gate_types == layer.gate_types
    assert loaded["lstm"].return_sequences is True


def test_bad_table_size_is_refused() -> None:
    rng = np.random.default_rng(4)
    layer = _random_layer(rng, False)
    import dataclasses

    with pytest.raises(FormatError, match="gate_tables shape"):
        dataclasses.replace(layer, gate_tables=layer.gate_tables[:, :32])
    with pytest.raises(FormatError, match="tanh_table"):
        dataclasses.replace(layer, tanh_table=layer.tanh_table[:10])
    with pytest.raises(FormatError, match="do not fit"):
        dataclasses.replace(layer, gate_tables=layer.gate_tables + 1000)


def test_narrow_accumulator_is_refused() -> None:
    rng = np.random.default_rng(5)
    layer = _random_layer(rng, False)
    import dataclasses

    bad = dataclasses.replace(layer, acc_types=(FixedType(20, 18),) * 4)
    graph = HwGraph((Input("x", (), (5, 3), FixedType(5, 1, True, RC, SAT)), bad))
    with pytest.raises(FormatError, match="fractional"):
        simulate(graph, np.zeros((1, 5, 3)))
