"""Accuracy targets of the model zoo (issue 4): trains each model with default settings.

Run: ``python benchmarks/accuracy.py [--seed 0] [--out runs/bench] [--only NAME]``. Prints a
table of test accuracy, target, pass/fail, epochs and training time (target: each run <= 180 s on
2 cores). Both wall and CPU seconds of ``train`` are shown: on a shared, loaded machine the wall
time is inflated, while the CPU time bounds the wall time of an idle machine from above, so the
time budget is judged on the CPU time. Under load, use ``--threads 1`` (2 contending torch
threads spin and inflate both wall and CPU time) and run the ``--only`` runs in parallel.
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
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (default: qnet.train.NUM_THREADS); 1 is faster on a loaded "
        "machine, and several --only runs can then go in parallel",
    )
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from qnet.data import load_dataset
    from qnet.train import NUM_THREADS, TrainConfig, default_model_config, train

    threads = args.threads or NUM_THREADS

    table = Table(title=f"qnet accuracy benchmark (defaults, seed {args.seed}, {threads} threads)")
    for col in (
        "model", "data", "test acc", "target", "ok", "train acc", "epochs", "wall s", "cpu s"
    ):  # fmt: skip
        table.add_column(col)
    failed = 0
    for name, kind, data, w_bits, a_bits, target in RUNS:
        if args.only and args.only not in name:
            continue
        dataset = load_dataset(data, kind, seed=args.seed)
        config = default_model_config(kind, dataset, w_bits=w_bits, a_bits=a_bits)
        t0, c0 = time.perf_counter(), time.process_time()
        result = train(
            config,
            TrainConfig(seed=args.seed),
            dataset,
            args.out / name.replace(" ", "_"),
            force=True,
            quiet=True,
            num_threads=threads,
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        m = result.metrics
        ok = m["test_accuracy"] >= target and cpu <= TIME_LIMIT_S
        failed += not ok
        table.add_row(
            name,
            data,
            f"{100 * m['test_accuracy']:.2f} %",
            f">= {100 * target:.1f} %",
            "yes" if ok else "NO",
            f"{100 * m['train_accuracy']:.2f} %",
            str(m["epochs"]),
            f"{wall:.1f}",
            f"{cpu:.1f}",
        )
        Console().print(
            f"{name}: {100 * m['test_accuracy']:.2f} % after {m['epochs']} epochs, "
            f"{wall:.1f} s wall, {cpu:.1f} s cpu"
        )
    Console().print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
