"""Brevitas' bnn_pynq example models through qnet: lower time, simulator vs Brevitas time and
the exact-equality count, as a Markdown table.

    python benchmarks/bnn_pynq.py [--n 1000] [names...]

Models are built with ``pretrained=False`` and randomised BatchNorm/TensorNorm statistics
(tests/test_brevitas_examples.py); inputs are uniform [0, 1) plus quantiser ties.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
from test_brevitas_examples import CNV, FC, brevitas, build, inputs  # noqa: E402

import qnet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*", default=FC + CNV)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| model | parameters | lower s | simulator s | Brevitas s | exact / outputs |")
    print("|---|---|---|---|---|---|")
    for name in args.names:
        model, shape = build(name)
        params = sum(p.numel() for p in model.parameters())
        t = time.perf_counter()
        graph = qnet.lower(model, torch.zeros(1, *shape))
        t_lower = time.perf_counter() - t
        x = inputs(shape, args.n)
        t = time.perf_counter()
        got = qnet.simulate(graph, x)
        t_sim = time.perf_counter() - t
        t = time.perf_counter()
        want = brevitas(model, x)
        t_brev = time.perf_counter() - t
        exact = int((got == want).sum())
        print(
            f"| {name} | {params:,} | {t_lower:.1f} | {t_sim:.2f} | {t_brev:.2f} | "
            f"{exact} / {want.size} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
