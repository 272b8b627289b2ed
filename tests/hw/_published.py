"""HwGraphs of published designs (shapes and precisions as published; synthetic weights).

Used by tests/hw/test_estimate.py to calibrate the estimator against
/work/shared/reference/published-synthesis.md (J1, J2, C1, T1).
"""

from __future__ import annotations

import numpy as np

from qnet.hw.fixed import FixedType
from qnet.hw.graph import Conv, Dense, Flatten, HwGraph, Input, MaxPool, ReLU

FX16 = FixedType(16, 6)  # ap_fixed<16,6>, the published hls4ml default precision


def _weights(
    rng: np.random.Generator, shape: tuple[int, ...], t: FixedType, std: float, prune: float = 0.0
) -> np.ndarray:
    """Trained-like weights: normal(0, std) quantised to ``t``; the smallest ``prune`` zeroed."""
    w = rng.normal(0.0, std, size=shape)
    if prune:
        cut = np.quantile(np.abs(w), prune)
        w[np.abs(w) < cut] = 0.0
    return np.clip(np.round(w * 2.0**t.frac), t.int_min, t.int_max).astype(np.int64)


def jet_mlp(seed: int = 0) -> HwGraph:
    """hls4ml tutorial jet-tagging MLP 16-64-32-32-5 (softmax not part of qnet graphs)."""
    rng = np.random.default_rng(seed)
    layers: list = [Input("x", (), (16,), FX16)]
    prev, n_prev = "x", 16
    for i, n in enumerate((64, 32, 32, 5)):
        w = _weights(rng, (n, n_prev), FX16, std=1.0 / np.sqrt(n_prev))
        b = _weights(rng, (n,), FX16, std=0.1)
        layers.append(
            Dense(
                f"fc{i + 1}",
                (prev,),
                (n,),
                FX16,
                weight=w,
                weight_type=FX16,
                bias=b,
                bias_type=FX16,
                acc_type=FX16,
            )
        )
        prev, n_prev = f"fc{i + 1}", n
        if n != 5:
            layers.append(ReLU(f"relu{i + 1}", (prev,), (n,), FX16))
            prev = f"relu{i + 1}"
    return HwGraph(tuple(layers))


def svhn_cnn(seed: int = 0) -> HwGraph:
    """hls4ml SVHN CNN, 50 % pruned (BN folded into the following quantiser in qnet graphs)."""
    rng = np.random.default_rng(seed)
    layers: list = [Input("x", (), (3, 32, 32), FX16)]
    prev, c, h = "x", 3, 32
    for i, f in enumerate((16, 16, 24)):
        w = _weights(rng, (f, c, 3, 3), FX16, std=1.0 / np.sqrt(9 * c), prune=0.5)
        h = h - 2
        layers.append(
            Conv(
                f"conv{i}",
                (prev,),
                (f, h, h),
                FX16,
                weight=w,
                weight_type=FX16,
                acc_type=FX16,
                stride=(1, 1),
                padding=(0, 0),
            )
        )
        layers.append(ReLU(f"relu{i}", (f"conv{i}",), (f, h, h), FX16))
        h //= 2
        layers.append(
            MaxPool(f"pool{i}", (f"relu{i}",), (f, h, h), FX16, kernel=(2, 2), stride=(2, 2))
        )
        prev, c = f"pool{i}", f
    layers.append(Flatten("flat", (prev,), (c * h * h,), FX16))
    prev, n_prev = "flat", c * h * h
    for i, n in enumerate((42, 64, 10)):
        w = _weights(rng, (n, n_prev), FX16, std=1.0 / np.sqrt(n_prev), prune=0.5)
        b = _weights(rng, (n,), FX16, std=0.1)
        layers.append(
            Dense(
                f"fc{i}",
                (prev,),
                (n,),
                FX16,
                weight=w,
                weight_type=FX16,
                bias=b,
                bias_type=FX16,
                acc_type=FX16,
            )
        )
        prev = f"fc{i}"
        if n != 10:
            layers.append(ReLU(f"frelu{i}", (prev,), (n,), FX16))
            prev = f"frelu{i}"
        n_prev = n
    return HwGraph(tuple(layers))


def tfc_w1a1(seed: int = 0) -> HwGraph:
    """FINN TFC-w1a1 784-64-64-64-10: +-1 weights (2-bit signed), 1-bit activations."""
    rng = np.random.default_rng(seed)
    w_t = FixedType(2, 2)
    a_t = FixedType(1, 1, signed=False)
    acc = FixedType(12, 12)
    layers: list = [Input("x", (), (784,), a_t)]
    prev, n_prev = "x", 784
    for i, n in enumerate((64, 64, 64, 10)):
        w = rng.choice(np.array([-1, 1]), size=(n, n_prev))
        layers.append(
            Dense(
                f"fc{i}",
                (prev,),
                (n,),
                a_t if n != 10 else acc,
                weight=w,
                weight_type=w_t,
                acc_type=acc,
            )
        )
        prev, n_prev = f"fc{i}", n
    return HwGraph(tuple(layers))
