"""Open RTL flow figures and the data the rtl-flow estimator is fitted on.

Usage:
    python benchmarks/rtl.py collect [--out DIR] [--data FILE] [--designs a,b,...]
        Writes each design's Verilog (qnet.export.verilog.write_rtl_project), runs the open
        flow (qnet.export.opensynth.run_open_flow: yosys, nextpnr, icepack/ecppack) on the
        icebreaker (iCE40UP5K) and the ulx3s (ECP5 LFE5U-85F), and appends one row per design
        and family to FILE (default tests/data/rtl_open_flow.json). Resumable: rows already in
        FILE are kept, and every flow resumes from its step markers.
    python benchmarks/rtl.py table [--data FILE]
        Prints the estimator table: design, family, yosys LUT, P&R LUT, fmax, rtl-flow
        estimate, ratio, fitted/held-out.

The designs are the seeded graphs of tests/export/hw_graphs.py (MLPs and ConvNets at 2, 4
and 8 bits): the data file stores how to rebuild each one, so tests/hw/test_estimate_rtl.py
compares the estimator with the measured counts without running a tool. Designs named in
HELD_OUT are never used to fit the constants of qnet's rtl cost model; the table says which
rows are which.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "export"))

DATA = ROOT / "tests" / "data" / "rtl_open_flow.json"
BOARDS = {"ice40": "icebreaker", "ecp5": "ulx3s"}


def _mlp(bits: int, seed: int, n_in: int, hidden: int) -> dict[str, Any]:
    return {"kind": "mlp", "bits": bits, "seed": seed, "n_in": n_in, "hidden": [hidden]}


def _conv(dims: int, bits: int, seed: int, size: int, ch: tuple[int, int]) -> dict[str, Any]:
    return {"kind": "conv", "dims": dims, "bits": bits, "seed": seed, "size": size, "ch": list(ch)}


#: name -> builder spec (make_mlp / make_convnet arguments). ``collect`` runs them in this
#: order (the small ones first: on a shared 2-core machine the WebAssembly yosys took from
#: seconds to 13 minutes per design).
DESIGNS: dict[str, dict[str, Any]] = {
    "mlp 8-8-10 2b": _mlp(2, 0, 8, 8),
    "conv1d (2,4) 2b": _conv(1, 2, 1, 8, (2, 4)),
    "mlp 16-12-10 2b": _mlp(2, 5, 16, 12),
    "mlp 16-16-10 2b": _mlp(2, 3, 16, 16),
    "mlp 8-8-10 4b": _mlp(4, 0, 8, 8),
    "conv2d (1,2) s6 2b": _conv(2, 2, 9, 6, (1, 2)),
    "mlp 4-4-10 8b": _mlp(8, 7, 4, 4),
    "conv1d (2,4) 4b": _conv(1, 4, 1, 8, (2, 4)),
    "conv1d (1,2) 8b": _conv(1, 8, 8, 8, (1, 2)),
    "mlp 6-6-10 8b": _mlp(8, 7, 6, 6),
    "conv2d (1,2) s6 4b": _conv(2, 4, 9, 6, (1, 2)),
    "mlp 8-8-10 8b": _mlp(8, 0, 8, 8),
    "mlp 16-12-10 4b": _mlp(4, 5, 16, 12),
    "mlp 16-16-10 4b": _mlp(4, 3, 16, 16),
    "conv2d (2,4) 4b": _conv(2, 4, 1, 8, (2, 4)),
}

#: Designs kept out of the fit (chosen before any fit was made): every row of these is a
#: held-out row in the table and in tests/hw/test_estimate_rtl.py.
HELD_OUT = ("mlp 16-12-10 2b", "conv1d (2,4) 4b", "conv2d (1,2) s6 4b", "mlp 16-12-10 4b")


def build(spec: dict[str, Any]):
    """The HwGraph of a design spec (see DESIGNS)."""
    from hw_graphs import from_spec

    return from_spec(spec)


def _load(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"about": __doc__.split("\n\n")[0], "rows": []}


def collect(args: argparse.Namespace) -> None:
    from qnet.export.opensynth import run_open_flow
    from qnet.export.verilog import write_rtl_project
    from qnet.hw.atomic import atomic_write

    data_file = Path(args.data)
    data = _load(data_file)
    have = {(r["design"], r["family"]) for r in data["rows"]}
    # design names hold commas ("conv1d (2,4) 4b"): split before each name
    names = re.split(r",\s*(?=mlp |conv)", args.designs) if args.designs else list(DESIGNS)
    root = Path(args.out)
    for name in names:
        spec = DESIGNS[name]
        todo = [f for f in args.families.split(",") if (name, f) not in have]
        if not todo:
            continue
        prj = root / name.replace(" ", "_").replace(",", "-").replace("(", "").replace(")", "")
        t0 = time.perf_counter()
        if not (prj / "verilog" / "qnet_rtl.json").is_file():
            write_rtl_project(build(spec), prj, force=True)
        t_write = time.perf_counter() - t0
        for family in todo:
            t1 = time.perf_counter()
            rep = run_open_flow(
                prj, BOARDS[family], quiet=True, tools=args.tools, place_and_route=not args.no_pnr
            )
            row = {
                "design": name,
                "spec": spec,
                "family": family,
                "board": rep.board,
                "yosys": rep.resources,
                "pnr": rep.pnr_resources,
                "fmax_mhz": rep.fmax_mhz,
                "target_mhz": rep.target_mhz,
                "step_seconds": rep.step_seconds,
                "verilog_seconds": round(t_write, 1),
                "tools": {k: v["version"] for k, v in rep.tools.items()},
                "notes": rep.notes,
            }
            data["rows"].append(row)
            atomic_write(data_file, json.dumps(data, indent=1) + "\n")
            pnr = rep.pnr_resources or {}
            print(
                f"{name:20s} {family:5s} yosys LUT {rep.resources['LUT']:6d} CARRY "
                f"{rep.resources['CARRY']:6d} | P&R LUT {pnr.get('LUT', '-')!s:>6} | fmax "
                f"{rep.fmax_mhz} | {time.perf_counter() - t1:.0f} s {rep.step_seconds}",
                flush=True,
            )


def table(args: argparse.Namespace) -> None:
    from qnet.hw import estimate

    data = _load(Path(args.data))
    print(
        "| design | family | yosys LUT | P&R LUT | yosys CARRY | fmax MHz | rtl estimate LUT "
        "| estimate / yosys LUT | estimate / P&R LUT | set |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    graphs: dict[str, Any] = {}
    for r in data["rows"]:
        g = graphs.setdefault(r["design"], build(r["spec"]))
        est = estimate(g, r["board"], flow="rtl")
        pnr = r["pnr"] or {}
        y_lut, p_lut = r["yosys"]["LUT"], pnr.get("LUT")
        fmax = "-" if r["fmax_mhz"] is None else f"{r['fmax_mhz']:.1f}"
        print(
            f"| {r['design']} | {r['family']} | {y_lut:,} | "
            f"{'-' if p_lut is None else f'{p_lut:,}'} | {r['yosys']['CARRY']:,} | "
            f"{fmax} | {est.lut:,} | "
            f"{est.lut / y_lut:.2f} | {'-' if not p_lut else f'{est.lut / p_lut:.2f}'} | "
            f"{'held-out' if r['design'] in HELD_OUT else 'fitted'} |"
        )


def _rtl_module():
    """The module holding RTL_FAMILY_MODELS (qnet's rtl cost model)."""
    import importlib

    for name in ("qnet.hw.cost_rtl", "qnet.hw.estimator"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(mod, "RTL_FAMILY_MODELS"):
            return mod
    raise ImportError("no module defines RTL_FAMILY_MODELS")


def features(graph: Any, board: str) -> tuple[float, float]:
    """(adder bits, logic bits) the rtl cost model counts for a graph: the estimate with unit
    constants (one LUT per adder bit, then one per logic bit)."""
    from qnet.hw import estimate

    mod = _rtl_module()
    from qnet.hw import load_board

    family = mod.RTL_FAMILY_OF[load_board(board).family]
    saved = mod.RTL_FAMILY_MODELS[family]
    out = []
    try:
        for unit in ((1000.0, 0.0, 0.0), (0.0, 1000.0, 0.0)):  # x1000: per-layer rounding
            mod.RTL_FAMILY_MODELS[family] = type(saved)(family, *unit)
            out.append(estimate(graph, board, flow="rtl").lut / 1000.0)
    finally:
        mod.RTL_FAMILY_MODELS[family] = saved
    return out[0], out[1]


def _one_term(x: Any, y: Any) -> float:
    """``a`` minimising the relative error sum((a * x / y - 1) ** 2)."""
    r = x / y
    return float((r.sum()) / (r**2).sum())


def fit(args: argparse.Namespace) -> None:
    """Least-squares constants (relative error) per family on the fitted rows."""
    import numpy as np

    data = _load(Path(args.data))
    graphs: dict[str, Any] = {}
    for family in sorted({r["family"] for r in data["rows"]}):
        rows = [r for r in data["rows"] if r["family"] == family and r["design"] not in HELD_OUT]
        feats = np.array(
            [features(graphs.setdefault(r["design"], build(r["spec"])), r["board"]) for r in rows]
        )
        lut = np.array([r["yosys"]["LUT"] for r in rows], dtype=float)
        carry = np.array([r["yosys"]["CARRY"] for r in rows], dtype=float)
        # relative error: divide every equation by the measured value
        a_lut, *_ = np.linalg.lstsq(feats / lut[:, None], np.ones_like(lut), rcond=None)
        if args.no_logic_term or a_lut[1] < 0:  # adder term alone
            a_lut = np.array([_one_term(feats[:, 0], lut), 0.0])
        c = _one_term(feats[:, 0], carry)
        pred = feats @ a_lut
        print(
            f"{family}: lut_per_adder_bit {a_lut[0]:.3f}, lut_per_logic_bit {a_lut[1]:.3f}, "
            f"carry_per_adder_bit {c:.3f}; fitted rows {len(rows)}, LUT ratio "
            f"{np.min(pred / lut):.2f}-{np.max(pred / lut):.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--out", default="/var/tmp/qnet_rtl_bench")
    c.add_argument("--data", default=str(DATA))
    c.add_argument("--designs", default="")
    c.add_argument("--families", default="ice40,ecp5")
    c.add_argument("--tools", default="yowasp", help="auto, native or yowasp")
    c.add_argument("--no-pnr", action="store_true", help="yosys only (no nextpnr, no fmax)")
    t = sub.add_parser("table")
    t.add_argument("--data", default=str(DATA))
    f = sub.add_parser("fit")
    f.add_argument("--data", default=str(DATA))
    f.add_argument("--no-logic-term", action="store_true")
    args = ap.parse_args()
    {"collect": collect, "table": table, "fit": fit}[args.cmd](args)


if __name__ == "__main__":
    main()
