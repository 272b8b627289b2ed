"""Accuracy targets of the model zoo (issue 4): trains each model with default settings.

Run: ``python benchmarks/accuracy.py [--seed 0] [--out runs/bench]``. Prints a table of test
accuracy, target, pass/fail and training time (target: each run <= 180 s on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# (name, kind, data, w_bits, a_bits, target test accuracy)
RUNS = [
    ("convnet2d 4-bit", "convnet2d", "digits", 4, 4, 0.975),
    ("convnet2d 8-bit", "convnet2d", "digits", 8, 8, 0.98),
    ("convnet2d 2-bit", "convnet2d", "digits", 2, 2, 0.93),
    ("convnet1d 4-bit", "convnet1d", "digits-rows", 4, 4, 0.95),
    ("lstm 4-bit", "lstm", "digits-rows", 4, 4, 0.95),
]
TIME_LIMIT_S = 180.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument("--only", default=None, help="substring of a run name")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from qnet.data import load_dataset
    from qnet.train import TrainConfig, default_model_config, train

    table = Table(title="qnet accuracy benchmark (defaults)")
    for col in ("model", "data", "test acc", "target", "ok", "train acc", "seconds"):
        table.add_column(col)
    failed = 0
    for name, kind, data, w_bits, a_bits, target in RUNS:
        if args.only and args.only not in name:
            continue
        dataset = load_dataset(data, kind, seed=args.seed)
        config = default_model_config(kind, dataset, w_bits=w_bits, a_bits=a_bits)
        t0 = time.perf_counter()
        result = train(
            config,
            TrainConfig(seed=args.seed),
            dataset,
            args.out / name.replace(" ", "_"),
            force=True,
            quiet=True,
        )
        wall = time.perf_counter() - t0
        m = result.metrics
        ok = m["test_accuracy"] >= target and wall <= TIME_LIMIT_S
        failed += not ok
        table.add_row(
            name,
            data,
            f"{100 * m['test_accuracy']:.2f} %",
            f">= {100 * target:.1f} %",
            "yes" if ok else "NO",
            f"{100 * m['train_accuracy']:.2f} %",
            f"{wall:.1f}",
        )
        Console().print(f"{name}: {100 * m['test_accuracy']:.2f} % in {wall:.1f} s")
    Console().print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
