"""Simulator vs Brevitas speed: 2,000 digits images through a 4-bit ConvNet2d (and the LSTM).

Run: ``python benchmarks/sim_speed.py``. Prints one table: simulator time, Brevitas (torch,
eval, no_grad) time and their ratio, and checks the outputs are equal.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")

import torch  # noqa: E402

import qnet  # noqa: E402
from qnet.data import load_dataset  # noqa: E402
from qnet.hw.simulator import simulate  # noqa: E402
from qnet.models import ModelConfig, build_model  # noqa: E402

N = 2000
REPEATS = 7


def _bench(name: str, model: torch.nn.Module, x: np.ndarray) -> tuple[str, float, float, bool]:
    model.eval()
    graph = qnet.lower(model, torch.from_numpy(x[:1]))
    xt = torch.from_numpy(x)
    x64 = x.astype(np.float64)
    with torch.no_grad():
        model(xt[:64])  # warm-up
    simulate(graph, x64[:64])
    # Interleaved repeats, best of REPEATS for each (these machines are noisy).
    t_brevitas = t_sim = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        with torch.no_grad():
            want = model(xt)
        t_brevitas = min(t_brevitas, time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = simulate(graph, x64)
        t_sim = min(t_sim, time.perf_counter() - t0)
    return name, t_sim, t_brevitas, bool(np.array_equal(got, want.double().numpy()))


def _calibrate(model: torch.nn.Module, x: np.ndarray) -> None:
    model.train()
    with torch.no_grad():
        for i in range(0, 512, 64):
            model(torch.from_numpy(x[i : i + 64]))


def main() -> None:
    rows = []
    data = load_dataset("digits", "convnet2d")
    x = np.resize(np.concatenate([data.x_train, data.x_test]), (N, *data.in_shape)).astype(
        np.float32
    )
    torch.manual_seed(0)
    model = build_model(
        ModelConfig("convnet2d", data.in_shape, data.num_classes, w_bits=4, a_bits=4)
    )
    _calibrate(model, x)
    rows.append(_bench(f"ConvNet2d 4-bit, {len(x)} digits images", model, x))
    seq = load_dataset("digits-rows", "lstm")
    xs = np.resize(np.concatenate([seq.x_train, seq.x_test]), (N, *seq.in_shape)).astype(np.float32)
    model = build_model(
        ModelConfig("lstm", seq.in_shape, seq.num_classes, hidden=(32,), dropout=0.0)
    )
    _calibrate(model, xs)
    try:
        rows.append(_bench(f"LSTM 4-bit, {len(xs)} digits-rows sequences", model, xs))
    except qnet.UnsupportedLayerError as exc:
        print(f"LSTM: not lowerable yet ({exc})")
    print(
        f"{'model':45s} {'simulator s':>12s} {'brevitas s':>11s} {'sim/brevitas':>13s} {'equal':>6s}"
    )
    for name, ts, tb, eq in rows:
        print(f"{name:45s} {ts:12.3f} {tb:11.3f} {ts / tb:13.2f} {str(eq):>6s}")


if __name__ == "__main__":
    main()
