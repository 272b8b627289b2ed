"""Peak memory of the simulator on 10,000 CIFAR-size inputs (tracemalloc), beyond the input.

Run: ``python benchmarks/sim_memory.py [--n 10000] [--budget-mb 48]``. Builds the CIFAR-size CNN
of ``sim_speed.py`` (3x32x32, 16/32/64 channels), simulates ``n`` float32 inputs once and
prints the peak of NumPy's traced allocations minus the input (not traced: made before) and
the output, the time and the chunk size.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402
from sim_speed import ROWS, _calibrate  # noqa: E402

import qnet  # noqa: E402
from qnet.hw.simulator import chunk_size, simulate  # noqa: E402
from qnet.models import build_model  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--budget-mb", type=float, default=0, help="0: the default budget")
    args = parser.parse_args(argv)
    _, config, make = ROWS["cifar"]
    torch.manual_seed(0)
    model = build_model(config)
    x = make(args.n)
    _calibrate(model, x)
    graph = qnet.lower(model, torch.from_numpy(x[:1]))
    budget = int(args.budget_mb * 2**20) or None
    simulate(graph, x[:8], memory_budget=budget)  # prepared weights cached
    tracemalloc.start()
    t0 = time.perf_counter()
    out = simulate(graph, x, memory_budget=budget)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{args.n} inputs {x.shape[1:]} ({x.nbytes / 2**20:.0f} MB float32): peak "
        f"{peak / 2**20:.1f} MB traced beyond the input (output {out.nbytes / 2**20:.2f} MB), "
        f"chunk {chunk_size(graph, budget)} samples, {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
