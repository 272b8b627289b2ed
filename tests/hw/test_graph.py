"""HwGraph: validation of layers and graphs, save/load round trip, summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qnet.errors import FormatError
from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import (
    Conv,
    Dense,
    Flatten,
    HwGraph,
    Input,
    MaxPool,
    MultiThreshold,
    ReLU,
)
from qnet.hw.simulator import simulate

U8 = FixedType(8, 0, False, Rounding.RND_CONV, Overflow.SAT)
W4 = FixedType(4, 1)
A4 = FixedType(4, 2, False, Rounding.RND_CONV, Overflow.SAT)


def small_graph(seed: int = 0) -> HwGraph:
    rng = np.random.default_rng(seed)
    acc = FixedType(20, 8)
    return HwGraph(
        (
            Input("in", (), (1, 8, 8), U8),
            Conv(
                "conv",
                ("in",),
                (4, 8, 8),
                acc,
                weight=rng.integers(-8, 8, (4, 1, 3, 3)),
                weight_type=W4,
                bias=rng.integers(-50, 50, 4),
                bias_type=FixedType(12, 4),
                acc_type=acc,
                stride=(1, 1),
                padding=(1, 1),
            ),
            ReLU("relu", ("conv",), (4, 8, 8), A4),
            MaxPool("pool", ("relu",), (4, 4, 4), A4, kernel=(2, 2), stride=(2, 2)),
            Flatten("flat", ("pool",), (64,), A4),
            Dense(
                "fc",
                ("flat",),
                (10,),
                FixedType(16, 6),
                weight=rng.integers(-8, 8, (10, 64)),
                weight_type=W4,
                acc_type=FixedType(16, 6),
            ),
        ),
        {"kind": "test"},
    )


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    graph = small_graph()
    path = graph.save(tmp_path / "g.npz")
    loaded = HwGraph.load(path)
    assert [layer.name for layer in loaded] == [layer.name for layer in graph]
    for a, b in zip(graph, loaded, strict=True):
        assert type(a) is type(b) and a.out_type == b.out_type and a.out_shape == b.out_shape
        for key, arr in a.arrays().items():
            np.testing.assert_array_equal(arr, b.arrays()[key])
    x = np.random.default_rng(1).random((50, 1, 8, 8))
    np.testing.assert_array_equal(simulate(graph, x), simulate(loaded, x))
    assert loaded.meta == {"kind": "test"}
    assert not list(tmp_path.glob("*.tmp"))


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(FormatError, match="junk.npz"):
        HwGraph.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(FormatError, match="not an HwGraph"):
        HwGraph.load(other)
    with pytest.raises(FormatError, match="no such"):
        HwGraph.load(tmp_path / "missing.npz")


def test_graph_validation_names_the_layer() -> None:
    g = small_graph()
    with pytest.raises(FormatError, match="'fc' reads 'nope'"):
        HwGraph(
            (
                *g.layers[:-1],
                Dense("fc", ("nope",), (10,), W4, weight=np.zeros((10, 64), int), weight_type=W4),
            )
        )
    with pytest.raises(FormatError, match="duplicate layer name 'relu'"):
        HwGraph((*g.layers, ReLU("relu", ("fc",), (10,), A4)))
    with pytest.raises(FormatError, match="starts with exactly one Input"):
        HwGraph(g.layers[1:])


def test_layer_validation() -> None:
    with pytest.raises(FormatError, match="'d': weight mantissas"):
        Dense("d", ("in",), (2,), W4, weight=np.array([[9, 0]]), weight_type=W4)
    with pytest.raises(FormatError, match="integer array"):
        Dense("d", ("in",), (2,), W4, weight=np.array([[0.5, 0]]), weight_type=W4)
    with pytest.raises(FormatError, match="bias has 3 entries for 1 outputs"):
        Dense(
            "d",
            ("in",),
            (1,),
            W4,
            weight=np.zeros((1, 2), int),
            weight_type=W4,
            bias=np.zeros(3, int),
            bias_type=W4,
        )
    with pytest.raises(FormatError, match="ascending"):
        MultiThreshold("t", ("in",), (1,), A4, thresholds=np.array([[3, 1]]), increasing=[True])


def test_replace_changes_one_layer() -> None:
    g = small_graph()
    narrow = g.replace("conv", acc_type=FixedType(10, 8), out_type=FixedType(10, 8))
    assert narrow["conv"].acc_type == FixedType(10, 8)
    assert g["conv"].acc_type == FixedType(20, 8)
    with pytest.raises(KeyError):
        g.replace("nope", out_type=A4)


def test_summary_lists_every_type() -> None:
    text = small_graph().summary()
    for needle in (
        "ap_ufixed<8,0,AP_RND_CONV,AP_SAT>",
        "ap_fixed<4,1>",
        "ap_fixed<20,8>",
        "conv",
        "fc",
    ):
        assert needle in text
