"""Executor speed on 2,000 digits images with a 4-bit ConvNet2d, one run.

    python benchmarks/executors.py [--n 2000] [--qonnx-n 50]

Times: qnet simulator, Brevitas (CPU), hls4ml C simulation (predict only; compile time shown
apart) and QONNX ``execute_onnx`` (on a subset, scaled to N). Every executor's outputs on the
common samples are checked for exact equality with the simulator's, so the table is of
executors that agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def _train(model, x, y, steps: int = 150, seed: int = 0) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


REPEATS = 5


def _qonnx_runner(model, example, workdir: Path):
    from qnet.export.qonnx import execute_qonnx, export_qonnx

    path = export_qonnx(model, example, workdir / "model.qonnx.onnx")
    return lambda xs: execute_qonnx(path, xs, quiet=True)


def main() -> None:
    import torch

    import qnet
    from qnet.data import load_dataset
    from qnet.export.hls import to_hls4ml
    from qnet.hw.simulator import simulate
    from qnet.models import ModelConfig, build_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--qonnx-n", type=int, default=50)
    args = parser.parse_args()

    data = load_dataset("digits", "convnet2d", seed=0)
    x_all = np.concatenate([data.x_test, data.x_train]).astype(np.float32)
    x = np.resize(x_all, (args.n, *x_all.shape[1:])).astype(np.float32)
    cfg = ModelConfig(
        kind="convnet2d", in_shape=data.in_shape, num_classes=data.num_classes, w_bits=4, a_bits=4
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    _train(model, data.x_train.astype(np.float32), data.y_train)
    graph = qnet.lower(model, torch.from_numpy(x[:1]))
    x64 = x.astype(np.float64)

    rows: list[tuple[str, float, int, str]] = []
    # The two fast executors: best of REPEATS interleaved runs (the slow ones run once).
    t_sim = t_brev = float("inf")
    simulate(graph, x64[:64])
    for _ in range(REPEATS):
        t = time.perf_counter()
        y_sim = np.asarray(simulate(graph, x64))
        t_sim = min(t_sim, time.perf_counter() - t)
        with torch.no_grad():
            t = time.perf_counter()
            out = model(torch.from_numpy(x))
            t_brev = min(t_brev, time.perf_counter() - t)
    rows.append(("qnet simulator", t_sim, args.n, f"best of {REPEATS}"))
    y_brev = getattr(out, "value", out).double().numpy()
    rows.append(("Brevitas (CPU)", t_brev, args.n, f"best of {REPEATS}"))

    with tempfile.TemporaryDirectory() as tmp:
        export = to_hls4ml(graph, board="pynq-z2", output_dir=Path(tmp) / "prj", write=False)
        t = time.perf_counter()
        export.compile()
        t_compile = time.perf_counter() - t
        t = time.perf_counter()
        y_csim = export.predict(x64)
        t_csim = time.perf_counter() - t
        rows.append(
            ("hls4ml C simulation", t_csim, args.n, f"measured (+{t_compile:.1f} s g++ compile)")
        )

        qonnx_run = _qonnx_runner(model, torch.from_numpy(x[:1]), Path(tmp))
        m = min(args.qonnx_n, args.n)
        t = time.perf_counter()
        y_qonnx = qonnx_run(x[:m])
        t_qonnx = (time.perf_counter() - t) * args.n / m
        rows.append(("QONNX execute_onnx", t_qonnx, m, f"{m} samples, scaled x{args.n / m:g}"))

    exact = {
        "Brevitas": np.array_equal(y_brev, y_sim),
        "C simulation": np.array_equal(y_csim, y_sim),
        f"QONNX ({m})": np.array_equal(y_qonnx.reshape(y_sim[:m].shape), y_sim[:m]),
    }
    print(
        f"4-bit ConvNet2d {cfg.in_shape}, channels {cfg.channels}, hidden {cfg.hidden}; {args.n} digits images"
    )
    print(
        f"{'executor':<22} {'time for N (s)':>15} {'per sample (ms)':>16} {'simulator is x faster':>22}  note"
    )
    for name, seconds, _, note in rows:
        print(
            f"{name:<22} {seconds:>15.4f} {1000 * seconds / args.n:>16.4f} {seconds / t_sim:>22.1f}  {note}"
        )
    print("exactly equal to the simulator: " + ", ".join(f"{k}: {v}" for k, v in exact.items()))


if __name__ == "__main__":
    main()
