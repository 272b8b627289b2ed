"""Simulator vs Brevitas CPU speed on six network shapes, in one run.

Run: ``python benchmarks/sim_speed.py [--n 2000] [--repeats 5] [--rows tiny,cifar,...]``.

Rows: a tiny 8x8 CNN (1->6->8 channels), the zoo ConvNet2d on digits, a CIFAR-size CNN
(3x32x32, 16/32/64 channels, 3 pools, dense 10), a ConvNet1d, an MLP and an LSTM (T=48).
For each: the simulator (``qnet.simulate``, default memory budget) and Brevitas (torch, eval,
``no_grad``, torch's default threads or ``--torch-threads``) on the same float32 inputs, interleaved, best of ``--repeats``
(these machines are shared and noisy), samples/s of each, their ratio (simulator time /
Brevitas time: below 1.0 the simulator is faster) and whether the outputs are equal.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable

import numpy as np

warnings.filterwarnings("ignore")

import torch  # noqa: E402

import qnet  # noqa: E402
from qnet.hw.simulator import simulate  # noqa: E402
from qnet.models import ModelConfig, build_model  # noqa: E402


def _calibrate(model: torch.nn.Module, x: np.ndarray) -> None:
    """Train-mode passes so the activation scales come from data, then eval."""
    model.train()
    with torch.no_grad():
        for i in range(0, min(len(x), 512), 64):
            model(torch.from_numpy(x[i : i + 64]))
    model.eval()


def _digits(n: int, kind: str) -> np.ndarray:
    from qnet.data import load_dataset

    data = load_dataset("digits", kind)
    return np.resize(np.concatenate([data.x_train, data.x_test]), (n, *data.in_shape)).astype(
        np.float32
    )


def _uniform(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


#: name -> (description, ModelConfig, input maker)
ROWS: dict[str, tuple[str, ModelConfig, Callable[[int], np.ndarray]]] = {
    "tiny": (
        "tiny 8x8 CNN (1->6->8 ch, max pool)",
        ModelConfig("convnet2d", (1, 8, 8), 10, channels=(6, 8), hidden=()),
        lambda n: _digits(n, "convnet2d"),
    ),
    "zoo": (
        "zoo ConvNet2d (digits, 16/32 ch, 64)",
        ModelConfig("convnet2d", (1, 8, 8), 10),
        lambda n: _digits(n, "convnet2d"),
    ),
    "cifar": (
        "CIFAR-size CNN 3x32x32 (16/32/64 ch)",
        ModelConfig("convnet2d", (3, 32, 32), 10, channels=(16, 32, 64), hidden=()),
        lambda n: _uniform(n, (3, 32, 32)),
    ),
    "conv1d": (
        "ConvNet1d 4x128 (16/32 ch, 64)",
        ModelConfig("convnet1d", (4, 128), 10, channels=(16, 32)),
        lambda n: _uniform(n, (4, 128)),
    ),
    "mlp": (
        "MLP 784-256-128-10",
        ModelConfig("mlp", (784,), 10, hidden=(256, 128)),
        lambda n: _uniform(n, (784,)),
    ),
    "lstm": (
        "LSTM T=48 F=8 hidden 32",
        ModelConfig("lstm", (48, 8), 10, hidden=(32,), dropout=0.0),
        lambda n: _uniform(n, (48, 8)),
    ),
}


def bench(key: str, n: int, repeats: int) -> tuple[str, int, float, float, bool]:
    """Time one row; returns (description, n, simulator s, Brevitas s, outputs equal)."""
    desc, config, make = ROWS[key]
    torch.manual_seed(0)
    model = build_model(config)
    x = make(n)
    _calibrate(model, x)
    graph = qnet.lower(model, torch.from_numpy(x[:1]))
    xt = torch.from_numpy(x)
    with torch.no_grad():
        model(xt[:64])  # warm-up
    simulate(graph, x[:64])
    t_brevitas = t_sim = float("inf")
    equal = True
    for _ in range(repeats):  # interleaved: both see the same machine load
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model(xt)
        want = (out.value if hasattr(out, "value") else out).double().numpy()
        t_brevitas = min(t_brevitas, time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = simulate(graph, x)
        t_sim = min(t_sim, time.perf_counter() - t0)
        equal = equal and bool(np.array_equal(got, want))
    return desc, n, t_sim, t_brevitas, equal


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="inputs per row")
    parser.add_argument("--repeats", type=int, default=5, help="best of N (interleaved)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="torch threads for Brevitas (0: default)"
    )
    args = parser.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        f"best of {args.repeats}"
    )
    head = (
        f"| {'net':38s} | {'N':>6s} | {'simulator ms':>12s} | {'sim samples/s':>13s} "
        f"| {'Brevitas ms':>11s} | {'Brev samples/s':>14s} | {'ratio':>5s} | equal |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for key in args.rows.split(","):
        desc, n, ts, tb, eq = bench(key.strip(), args.n, args.repeats)
        print(
            f"| {desc:38s} | {n:6d} | {ts * 1e3:12.1f} | {n / ts:13,.0f} | {tb * 1e3:11.1f} "
            f"| {n / tb:14,.0f} | {ts / tb:5.2f} | {str(eq):5s} |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
