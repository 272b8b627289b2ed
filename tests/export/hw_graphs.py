"""Hand-built HwGraphs with realistic types (random integer weights, exact accumulators)."""

from __future__ import annotations

import numpy as np

from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import Conv, Dense, Flatten, HwGraph, Input, MaxPool, ReLU


def in_type(bits: int) -> FixedType:
    return FixedType(bits, 0, signed=False, rounding=Rounding.RND_CONV, overflow=Overflow.SAT)


def w_type(bits: int) -> FixedType:
    return FixedType(bits, 1, signed=True)


def act_type(bits: int) -> FixedType:
    return FixedType(bits, 2, signed=False, rounding=Rounding.RND_CONV, overflow=Overflow.SAT)


def out_type(bits: int) -> FixedType:
    return FixedType(bits + 4, 5, signed=True, rounding=Rounding.RND_CONV, overflow=Overflow.SAT)


def acc_for(
    x_t: FixedType, weight: np.ndarray, w_t: FixedType, bias: np.ndarray, b_t: FixedType
) -> FixedType:
    """Exact accumulator: frac covers products and bias, width covers the bound."""
    frac = max(x_t.frac + w_t.frac, b_t.frac)
    xmax = max(abs(x_t.int_min), abs(x_t.int_max)) << (frac - x_t.frac - w_t.frac)
    wsum = int(np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1).max())
    bmax = int(np.abs(bias).max()) << (frac - b_t.frac)
    bound = xmax * wsum + bmax
    width = bound.bit_length() + 1
    return FixedType(width, width - frac, signed=True)


def _weights(rng: np.random.Generator, shape: tuple[int, ...], t: FixedType) -> np.ndarray:
    return rng.integers(t.int_min, t.int_max + 1, size=shape).astype(np.int64)


def _weighted(cls, rng, name, src, x_t, shape, res_t, out_shape, **kw):
    w_t = kw.pop("w_t")
    b_t = FixedType(w_t.width + 4, w_t.integer + 3)
    weight = _weights(rng, shape, w_t)
    bias = rng.integers(-(1 << (b_t.width - 3)), 1 << (b_t.width - 3), size=shape[0])
    acc = acc_for(x_t, weight, w_t, bias, b_t)
    return cls(
        name=name,
        inputs=(src,),
        out_shape=out_shape,
        out_type=res_t,
        weight=weight,
        weight_type=w_t,
        bias=bias,
        bias_type=b_t,
        acc_type=acc,
        **kw,
    )


def make_convnet(
    dims: int,
    bits: int,
    seed: int = 0,
    size: int = 8,
    ch: tuple[int, int] = (4, 8),
    fc: int = 16,
) -> HwGraph:
    """Input -> conv(pad 1) -> relu -> maxpool -> conv -> relu -> flatten -> dense(fc) -> relu
    -> dense(10)."""
    rng = np.random.default_rng(seed)
    sp = (size,) * dims
    k = (3,) * dims
    layers: list = [Input("inp", (), (1, *sp), in_type(8))]
    a_t = act_type(bits)
    layers.append(
        _weighted(
            Conv,
            rng,
            "conv1",
            "inp",
            in_type(8),
            (ch[0], 1, *k),
            out_type(bits),
            (ch[0], *sp),
            w_t=w_type(bits),
            stride=(1,) * dims,
            padding=(1,) * dims,
        )
    )
    layers.append(ReLU("relu1", ("conv1",), (ch[0], *sp), a_t))
    half = tuple(s // 2 for s in sp)
    layers.append(
        MaxPool("pool1", ("relu1",), (ch[0], *half), a_t, kernel=(2,) * dims, stride=(2,) * dims)
    )
    sp2 = tuple(s - 2 for s in half)
    layers.append(
        _weighted(
            Conv,
            rng,
            "conv2",
            "pool1",
            a_t,
            (ch[1], ch[0], *k),
            out_type(bits),
            (ch[1], *sp2),
            w_t=w_type(bits),
            stride=(1,) * dims,
            padding=(0,) * dims,
        )
    )
    layers.append(ReLU("relu2", ("conv2",), (ch[1], *sp2), a_t))
    n_flat = ch[1] * int(np.prod(sp2))
    layers.append(Flatten("flatten", ("relu2",), (n_flat,), a_t))
    layers.append(
        _weighted(
            Dense, rng, "fc1", "flatten", a_t, (fc, n_flat), out_type(bits), (fc,), w_t=w_type(bits)
        )
    )
    layers.append(ReLU("relu3", ("fc1",), (fc,), a_t))
    layers.append(
        _weighted(
            Dense, rng, "fc2", "relu3", a_t, (10, fc), out_type(bits), (10,), w_t=w_type(bits)
        )
    )
    return HwGraph(tuple(layers), {"kind": f"convnet{dims}d", "bits": bits})


def make_mlp(
    bits: int, seed: int = 0, n_in: int = 64, hidden: tuple[int, ...] = (32, 16)
) -> HwGraph:
    rng = np.random.default_rng(seed)
    layers: list = [Input("inp", (), (n_in,), in_type(8))]
    a_t = act_type(bits)
    src, x_t, width = "inp", in_type(8), n_in
    for i, h in enumerate(hidden):
        layers.append(
            _weighted(
                Dense, rng, f"fc{i}", src, x_t, (h, width), out_type(bits), (h,), w_t=w_type(bits)
            )
        )
        layers.append(ReLU(f"relu{i}", (f"fc{i}",), (h,), a_t))
        src, x_t, width = f"relu{i}", a_t, h
    layers.append(
        _weighted(Dense, rng, "out", src, x_t, (10, width), out_type(bits), (10,), w_t=w_type(bits))
    )
    return HwGraph(tuple(layers), {"kind": "mlp", "bits": bits})


def random_inputs(graph: HwGraph, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.05, 1.05, size=(n, *graph.input.out_shape))


def from_spec(spec: dict) -> HwGraph:
    """A graph from a stored spec: ``{"kind": "mlp", "bits", "seed", "n_in", "hidden"}`` or
    ``{"kind": "conv", "dims", "bits", "seed", "size", "ch"[, "fc"]}`` (tests/data/rtl_open_flow.json;
    ``fc``, the first dense layer's width, defaults to 16) or ``{"kind": "file", "path"}`` (an
    HwGraph file under tests/data)."""
    if spec["kind"] == "file":  # a stored HwGraph, e.g. of a trained model
        from pathlib import Path

        return HwGraph.load(Path(__file__).parents[1] / "data" / spec["path"])
    if spec["kind"] == "mlp":
        return make_mlp(
            spec["bits"], seed=spec["seed"], n_in=spec["n_in"], hidden=tuple(spec["hidden"])
        )
    return make_convnet(
        spec["dims"],
        spec["bits"],
        seed=spec["seed"],
        size=spec["size"],
        ch=tuple(spec["ch"]),
        fc=spec.get("fc", 16),
    )
