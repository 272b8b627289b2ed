"""Open RTL flow figures: da4ml trace/Verilog, Verilator build and simulation, yosys per family.

Usage: python benchmarks/rtl.py [--out DIR] [--models mlp,conv_small,conv_demo,zoo_mlp]
Prints a markdown table: per model and board, yosys LUT/FF/CARRY/DSP/BRAM, nextpnr fmax
(iCE40) next to qnet.hw.estimator's LUT/FF/DSP.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "export"))

BOARDS = ("arty-a7-100t", "zcu104", "icebreaker", "ulx3s")


def _models(names: list[str]):
    from hw_graphs import make_convnet, make_mlp

    out = {}
    for name in names:
        if name == "mlp":
            out[name] = make_mlp(4)  # 64-32-16-10, 4-bit weights, 8-bit input
        elif name == "conv_small":
            out[name] = make_convnet(2, 4, ch=(2, 4))
        elif name == "conv_demo":
            out[name] = make_convnet(2, 4, ch=(16, 32))  # digits 8x8, channels (16, 32)
        elif name.startswith("zoo_"):
            import torch

            from qnet.lowering import lower
            from qnet.models import ModelConfig, build_model

            kind = {"zoo_mlp": "mlp", "zoo_conv": "convnet2d"}[name]
            cfg = ModelConfig(
                kind=kind,
                in_shape=(64,) if kind == "mlp" else (1, 8, 8),
                num_classes=10,
                w_bits=4,
                a_bits=4,
                in_bits=8,
            )
            torch.manual_seed(0)
            model = build_model(cfg).eval()
            out[name] = lower(model, torch.zeros((1, *cfg.in_shape)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/qnet_rtl_bench")
    ap.add_argument("--models", default="mlp,conv_small,zoo_mlp,conv_demo")
    ap.add_argument("--boards", default=",".join(BOARDS))
    ap.add_argument(
        "--verilator", action="store_true", help="also build and time the Verilator model"
    )
    args = ap.parse_args()
    from qnet.export.opensynth import run_open_flow
    from qnet.export.verilog import VerilogProject, build_rtl, write_rtl_project
    from qnet.hw.estimator import estimate
    from qnet.hw.simulator import simulate

    root = Path(args.out)
    rows = []
    for name, graph in _models(args.models.split(",")).items():
        prj = root / name
        t0 = time.perf_counter()
        write_rtl_project(graph, prj, force=True)
        t_write = time.perf_counter() - t0
        vp = VerilogProject.load(prj / "verilog")
        print(
            f"## {name}: trace+write {t_write:.1f} s, da4ml estimate {vp.estimated_luts:,.0f} LUT",
            flush=True,
        )
        if args.verilator:
            model = build_rtl(graph, root / f"{name}_sim", force=True)
            rng = np.random.default_rng(0)
            x = rng.uniform(-0.05, 1.05, size=(10000, *graph.input.out_shape))
            t1 = time.perf_counter()
            got = model.predict(x)
            t_rtl = time.perf_counter() - t1
            t1 = time.perf_counter()
            ref = simulate(graph, x)
            t_sim = time.perf_counter() - t1
            print(
                f"   verilator build {model.build_seconds:.1f} s; RTL sim 10,000 inputs {t_rtl:.2f} s; "
                f"simulator {t_sim:.2f} s; exact: {np.array_equal(ref, got)}",
                flush=True,
            )
        for board in args.boards.split(","):
            t1 = time.perf_counter()
            rep = run_open_flow(prj, board, quiet=True, force=True)
            est = estimate(graph, board)
            r = rep.resources
            rows.append(
                f"| {name} | {board} ({rep.family}) | {r['LUT']:,} | {r['FF']:,} | {r['CARRY']:,} | {r['DSP']} | "
                f"{r['BRAM_18K']} | {'' if rep.fmax_mhz is None else f'{rep.fmax_mhz:.1f}'} | "
                f"{est.lut:,} / {est.ff:,} / {est.dsp} | {vp.estimated_luts:,.0f} | {time.perf_counter() - t1:.0f} s | "
                f"{'; '.join(rep.notes)} |"
            )
            print(rows[-1], flush=True)
    print()
    print(
        "| model | board (family) | LUT | FF | CARRY | DSP | BRAM18K | fmax MHz | qnet estimate LUT/FF/DSP | da4ml LUT est | flow time | notes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
