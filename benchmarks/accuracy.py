"""Accuracy of the model zoo against a float baseline (issue 14), plus QuantLSTM speed.

Run: ``python benchmarks/accuracy.py [--seed 0] [--epochs 30] [--out runs/bench] [--only NAME]
[--threads 1] [--warm-start auto]``. For each zoo kind on digits, digits-rows and two generated
data sets that are not images (``signals``: 1-D signals of 40 samples with outliers, ``sequences``: 64-step
sequences whose class is a motif early in the sequence), it trains the same architecture
without quantisers (float baseline), 4-bit and 8-bit with the default recipe, and prints test
accuracy, the quantisation cost and seconds per epoch (forward/backward/step time only).
Targets: 8-bit within 1 point of float, 4-bit within 3 points of float.

``--lstm-timing`` (also part of the default run) times one epoch of QuantLSTM against a plain
``nn.LSTM`` of the same size on the same batches (1,600 x 40 x 1, batch 64, hidden 32), in one
process, best of 2 epochs each: target QuantLSTM <= 10x. It also times one epoch with
Brevitas' own QuantLSTM forward (what qnet's fast training forward replaces).

The generated data sets are written as ``.npz`` under ``--out`` and loaded like a user's file
(standardised inside the model by default).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# (name, kind, data)
ROWS = [
    ("convnet2d digits", "convnet2d", "digits"),
    ("mlp digits", "mlp", "digits"),
    ("convnet1d digits-rows", "convnet1d", "digits-rows"),
    ("lstm digits-rows", "lstm", "digits-rows"),
    ("convnet1d signals", "convnet1d", "signals"),
    ("mlp signals", "mlp", "signals"),
    ("lstm signals", "lstm", "signals"),
    ("convnet1d sequences", "convnet1d", "sequences"),
    ("lstm sequences", "lstm", "sequences"),
]
TARGET_8BIT = 0.01
TARGET_4BIT = 0.03
LSTM_TARGET_RATIO = 10.0


def _data_path(out: Path, data: str, seed: int) -> str:
    """Built-in names pass through; the generated sets are written once as .npz."""
    if data not in ("signals", "sequences"):
        return data
    import numpy as np

    from qnet.data import synthetic_sequences, synthetic_signals

    path = out / f"{data}_seed{seed}.npz"
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        arrays = (synthetic_signals if data == "signals" else synthetic_sequences)(seed=seed)
        np.savez(path, **arrays)
    return str(path)


def lstm_timing(threads: int, epochs: int = 2) -> dict[str, float]:
    """Seconds per epoch (best of ``epochs``) of the zoo's 4-bit QuantLSTM training (qnet's
    fast training forward, and Brevitas' own forward for one epoch) vs a float nn.LSTM of the
    same size, same batches, in this run."""
    import torch
    import torch.nn.functional as F

    from qnet.data import synthetic_signals
    from qnet.models import ModelConfig, build_model

    torch.set_num_threads(threads)
    arrays = synthetic_signals(n_train=1600, n_test=10, seed=0)
    x = torch.from_numpy(arrays["x_train"])[:, :, None]
    y = torch.from_numpy(arrays["y_train"]).long()
    result: dict[str, float] = {}
    runs = (  # label, quantised, qnet's fast training forward, epochs
        ("quantlstm", True, True, epochs),
        ("brevitas", True, False, 1),
        ("nn.lstm", False, True, epochs),
    )
    for label, quantize, fast, n_epochs in runs:
        config = ModelConfig(
            "lstm", (40, 1), 10, w_bits=4, a_bits=4, hidden=(32,), quantize=quantize
        )
        torch.manual_seed(0)
        model = build_model(config)
        model.fast_training = fast
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        best = float("inf")
        for _ in range(n_epochs):
            t0 = time.perf_counter()
            for start in range(0, len(x), 64):
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x[start : start + 64]), y[start : start + 64])
                loss.backward()
                opt.step()
            best = min(best, time.perf_counter() - t0)
        result[label] = best
    result["ratio"] = result["quantlstm"] / result["nn.lstm"]
    result["brevitas_ratio"] = result["brevitas"] / result["nn.lstm"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument(
        "--only", default=None, help="comma-separated row names (or substrings of them)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument(
        "--lstm-timing", action="store_true", help="only the QuantLSTM vs nn.LSTM timing"
    )
    parser.add_argument("--no-lstm-timing", action="store_true")
    parser.add_argument(
        "--warm-start", default="auto", help="auto, float or none (TrainConfig.warm_start)"
    )
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    failed = 0
    if not args.lstm_timing:
        from qnet.data import load_dataset
        from qnet.train import TrainConfig, default_model_config, train

        table = Table(
            title=f"qnet accuracy vs float (defaults, {args.epochs} epochs, seed {args.seed}, "
            f"warm start {args.warm_start}, {args.threads} thread(s))"
        )
        for col in (
            "model", "data", "float", "4-bit", "cost 4", "8-bit", "cost 8", "ok",
            "s/epoch float", "s/epoch 4-bit", "s/epoch 8-bit",
        ):  # fmt: skip
            table.add_column(col)
        for name, kind, data in ROWS:
            if args.only and not any(part in name for part in args.only.split(",")):
                continue
            spec = _data_path(args.out, data, args.seed)
            dataset = load_dataset(spec, kind, seed=args.seed)
            cfg = TrainConfig(seed=args.seed, epochs=args.epochs, warm_start=args.warm_start)
            runs = {}
            for bits in (4, 8):
                config = default_model_config(kind, dataset, w_bits=bits, a_bits=bits)
                runs[bits] = train(
                    config,
                    cfg,
                    dataset,
                    args.out / f"{name.replace(' ', '_')}_{bits}bit",
                    force=True,
                    quiet=True,
                    num_threads=args.threads,
                    float_baseline=bits == 4,
                ).metrics
            fb = runs[4]["float_baseline"]
            f_acc, a4, a8 = fb["test_accuracy"], runs[4]["test_accuracy"], runs[8]["test_accuracy"]
            ok = f_acc - a8 <= TARGET_8BIT and f_acc - a4 <= TARGET_4BIT
            failed += not ok
            row = [
                name,
                data,
                f"{100 * f_acc:.1f} %",
                f"{100 * a4:.1f} %",
                f"{100 * (f_acc - a4):+.1f}",
                f"{100 * a8:.1f} %",
                f"{100 * (f_acc - a8):+.1f}",
                "yes" if ok else "NO",
                f"{fb['seconds_per_epoch']:.2f}",
                f"{runs[4]['seconds_per_epoch']:.2f}",
                f"{runs[8]['seconds_per_epoch']:.2f}",
            ]
            table.add_row(*row)
            console.print(" | ".join(row), highlight=False)
        console.print(table)
    if args.lstm_timing or not args.no_lstm_timing:
        t = lstm_timing(args.threads)
        ok = t["ratio"] <= LSTM_TARGET_RATIO
        failed += not ok
        console.print(
            f"QuantLSTM {t['quantlstm']:.2f} s/epoch vs nn.LSTM {t['nn.lstm']:.3f} s/epoch "
            f"(1600 x 40 x 1, batch 64, hidden 32): {t['ratio']:.1f}x "
            f"(target <= {LSTM_TARGET_RATIO:.0f}x: {'yes' if ok else 'NO'}); Brevitas' own "
            f"QuantLSTM forward {t['brevitas']:.2f} s/epoch: {t['brevitas_ratio']:.1f}x",
            highlight=False,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
