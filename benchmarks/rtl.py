"""Open RTL flow figures and the data the rtl-flow estimator is fitted on.

Usage:
    python benchmarks/rtl.py collect [--out DIR] [--data FILE] [--designs a,b,...]
        Writes each design's Verilog (qnet.export.verilog.write_rtl_project), runs the open
        flow (qnet.export.opensynth.run_open_flow: yosys, nextpnr, icepack/ecppack) on the
        icebreaker (iCE40UP5K) and the ulx3s (ECP5 LFE5U-85F), and appends one row per design
        and family to FILE (default tests/data/rtl_open_flow.json). Resumable: rows already in
        FILE are kept, and every flow resumes from its step markers.
    python benchmarks/rtl.py table [--data FILE]
        Prints the estimator table (markdown): design, family, yosys LUT, P&R LUT, fmax,
        rtl-flow estimate, ratios, CARRY, fitted/held-out; then the error band per family/set.
    python benchmarks/rtl.py fit [--data FILE]
        Fits the constants of qnet's rtl cost model on the fitted rows (least squares on the
        relative error) for several model forms, with their leave-one-out and held-out error.
    python benchmarks/rtl.py adopt PROJECT --design NAME [--note TEXT]
        Adds the rows of a project synthesised elsewhere (qnet rtl + qnet synth --flow open),
        e.g. a trained network; adopted designs are held out.

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
#: family -> board. Xilinx: yosys ``synth_xilinx -family xc7`` only (no open place and route for
#: Xilinx devices), so its rows have yosys counts and no P&R counts or fmax.
BOARDS = {"ice40": "icebreaker", "ecp5": "ulx3s", "xilinx": "arty-a7-100t"}


def _mlp(bits: int, seed: int, n_in: int, hidden: int) -> dict[str, Any]:
    return {"kind": "mlp", "bits": bits, "seed": seed, "n_in": n_in, "hidden": [hidden]}


def _conv(
    dims: int, bits: int, seed: int, size: int, ch: tuple[int, int], fc: int = 16
) -> dict[str, Any]:
    spec = {"kind": "conv", "dims": dims, "bits": bits, "seed": seed, "size": size, "ch": list(ch)}
    return spec if fc == 16 else {**spec, "fc": fc}


#: name -> builder spec (make_mlp / make_convnet arguments). ``collect`` runs them in this
#: order. Sizes are kept small: on a shared 2-core machine yosys' abc9 step took from seconds to
#: 16 minutes per design (it grows fast with the carry-save logic of the multi-operand adders
#: yosys' alumacc builds from da4ml's adder trees; ``python benchmarks/rtl.py coarse`` shows
#: them in seconds, without abc9).
DESIGNS: dict[str, dict[str, Any]] = {
    "mlp 8-8-10 2b": _mlp(2, 0, 8, 8),
    "conv1d (2,4) 2b": _conv(1, 2, 1, 8, (2, 4)),
    "mlp 16-12-10 2b": _mlp(2, 5, 16, 12),
    "mlp 16-16-10 2b": _mlp(2, 3, 16, 16),
    "mlp 4-4-10 8b": _mlp(8, 7, 4, 4),
    "mlp 4-4-10 4b": _mlp(4, 7, 4, 4),
    "conv1d (1,2) fc4 4b": _conv(1, 4, 8, 8, (1, 2), 4),
    "conv1d (1,2) fc4 2b": _conv(1, 2, 8, 8, (1, 2), 4),
    "mlp 12-8-10 2b": _mlp(2, 11, 12, 8),
    "conv1d (1,2) s6 fc4 8b": _conv(1, 8, 8, 6, (1, 2), 4),
    "mlp 6-6-10 4b": _mlp(4, 7, 6, 6),
    "conv1d (1,2) fc8 4b": _conv(1, 4, 8, 8, (1, 2), 8),
    "mlp 3-4-10 8b": _mlp(8, 13, 3, 4),
    "mlp 8-8-10 4b": _mlp(4, 0, 8, 8),
    "conv1d (2,2) fc6 4b": _conv(1, 4, 25, 8, (2, 2), 6),
    "conv1d (2,4) fc6 2b": _conv(1, 2, 26, 8, (2, 4), 6),
    "mlp 6-4-10 8b": _mlp(8, 23, 6, 4),
    "conv1d (2,2) s6 fc4 8b": _conv(1, 8, 24, 6, (2, 2), 4),
    "conv1d (2,4) fc4 4b": _conv(1, 4, 1, 8, (2, 4), 4),
    "mlp 10-6-10 4b": _mlp(4, 21, 10, 6),
    "mlp 5-5-10 8b": _mlp(8, 22, 5, 5),
    "mlp 20-12-10 2b": _mlp(2, 27, 20, 12),
    # trained on digits (the iCE40 and ECP5 rows are adopted from the fresh-clone run)
    "trained mlp 64-8-10 2b": {"kind": "file", "path": "rtl_trained_mlp_64-8-10_2b.npz"},
}

#: Designs kept out of the fit, chosen before any fit was made: every row of these is a
#: held-out row in the table and in tests/hw/test_estimate_rtl.py. (The first session's list
#: also named conv1d (2,4) 4b, conv2d (1,2) s6 4b and mlp 16-12-10 4b: never measured, their
#: synthesis did not finish on the shared machine, so they were replaced by smaller designs of
#: the same kinds and bit widths before this fit.)
HELD_OUT = (
    "mlp 16-12-10 2b",
    "conv1d (1,2) fc4 2b",
    "mlp 6-6-10 4b",
    "conv1d (1,2) fc8 4b",
    "mlp 3-4-10 8b",
    # added (before they were measured) with the second batch of designs
    "conv1d (2,2) s6 fc4 8b",
    "mlp 10-6-10 4b",
    # a trained network (adopted from a fresh-clone run of qnet synth --flow open)
    "trained mlp 64-8-10 2b",
)


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
            data = _load(data_file)  # again: rows written meanwhile (another run, adopt) stay
            data["rows"].append(row)
            data["held_out"] = list(HELD_OUT)
            atomic_write(data_file, json.dumps(data, indent=1) + "\n")
            pnr = rep.pnr_resources or {}
            print(
                f"{name:20s} {family:5s} yosys LUT {rep.resources['LUT']:6d} CARRY "
                f"{rep.resources['CARRY']:6d} | P&R LUT {pnr.get('LUT', '-')!s:>6} | fmax "
                f"{rep.fmax_mhz} | {time.perf_counter() - t1:.0f} s {rep.step_seconds}",
                flush=True,
            )


def _set(rows: list[dict[str, Any]], design: str) -> str:
    return "held-out" if design in HELD_OUT else "fitted"


def adopt(args: argparse.Namespace) -> None:
    """Add the rows of a ``qnet rtl`` project synthesised elsewhere by ``qnet synth --flow
    open`` (its ``synth_report.json``): the project's HwGraph is copied to tests/data so the
    row can be rebuilt. Adopted rows are held out (listed in HELD_OUT by their name)."""
    import shutil

    from qnet.hw.atomic import atomic_write

    data_file = Path(args.data)
    data = _load(data_file)
    prj = Path(args.project)
    graph_name = f"rtl_{args.design.replace(' ', '_').replace('(', '').replace(')', '')}.npz"
    shutil.copy(prj / "hwgraph.npz", data_file.parent / graph_name)
    for rep_file in sorted(prj.glob("open_synth/*/synth_report.json")):
        rep = json.loads(rep_file.read_text())
        family = {v: k for k, v in BOARDS.items()}[rep["board"]]
        data["rows"] = [
            r for r in data["rows"] if (r["design"], r["family"]) != (args.design, family)
        ]
        data["rows"].append(
            {
                "design": args.design,
                "spec": {"kind": "file", "path": graph_name},
                "family": family,
                "board": rep["board"],
                "yosys": rep["synth_resources"],
                "pnr": rep["pnr_resources"],
                "fmax_mhz": rep["fmax_mhz"],
                "target_mhz": rep["target_mhz"],
                "step_seconds": rep["step_seconds"],
                "verilog_seconds": None,
                "tools": {k: v["version"] for k, v in rep["tools"].items()},
                "notes": [*rep["notes"], f"adopted from {rep_file}: {args.note}"],
            }
        )
        print(f"{args.design} {family}: yosys LUT {rep['synth_resources']['LUT']}")
    data["held_out"] = list(HELD_OUT)
    atomic_write(data_file, json.dumps(data, indent=1) + "\n")


def table(args: argparse.Namespace) -> None:
    """The estimator table (markdown) and, per family, the LUT ratio range of each set."""
    import numpy as np

    from qnet.hw import estimate

    data = _load(Path(args.data))
    print(
        "| design | family | yosys LUT | P&R LUT | fmax MHz | rtl estimate LUT "
        "| estimate / yosys LUT | estimate / P&R LUT | yosys CARRY | estimate CARRY | set |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    graphs: dict[str, Any] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    for r in sorted(data["rows"], key=lambda r: (r["family"], r["design"] in HELD_OUT)):
        g = graphs.setdefault(r["design"], build(r["spec"]))
        est = estimate(g, r["board"], flow="rtl")
        pnr = r["pnr"] or {}
        y_lut, p_lut = r["yosys"]["LUT"], pnr.get("LUT")
        fmax = "-" if r["fmax_mhz"] is None else f"{r['fmax_mhz']:.1f}"
        kind = _set(data["rows"], r["design"])
        ratios.setdefault((r["family"], kind), []).append(est.lut / y_lut)
        print(
            f"| {r['design']} | {r['family']} | {y_lut:,} | "
            f"{'-' if p_lut is None else f'{p_lut:,}'} | {fmax} | {est.lut:,} | "
            f"{est.lut / y_lut:.2f} | {'-' if not p_lut else f'{est.lut / p_lut:.2f}'} | "
            f"{r['yosys']['CARRY']:,} | {est.carry:,} | {kind} |"
        )
    print()
    print("| family | set | rows | estimate / yosys LUT | mean abs(ratio - 1) |")
    print("|---|---|---|---|---|")
    for (family, kind), rs in sorted(ratios.items()):
        a = np.array(rs)
        print(
            f"| {family} | {kind} | {len(a)} | {a.min():.2f}-{a.max():.2f} | "
            f"{np.mean(np.abs(a - 1)):.2f} |"
        )


def _rtl_module():
    """qnet's rtl cost model (the module holding RTL_FAMILY_MODELS)."""
    import importlib

    return importlib.import_module("qnet.hw.cost_rtl")


#: The counted quantities of the rtl cost model, one per constant of RtlFamilyModel.
LUT_TERMS = ("lut_per_product_bit", "lut_per_sum_bit", "lut_per_logic_bit")
CARRY_TERMS = ("carry_per_product_bit", "carry_per_sum_bit")


def features(graph: Any, board: str) -> dict[str, float]:
    """What the rtl cost model counts for a graph (product adder bits, adder-tree bits, logic
    bits): the estimate with one constant at a time set to 1 (x1000, against per-layer
    rounding) and the others to 0."""
    import dataclasses

    from qnet.hw import estimate, load_board

    mod = _rtl_module()
    family = mod.RTL_FAMILY_OF[load_board(board).family]
    saved = mod.RTL_FAMILY_MODELS[family]
    names = [f.name for f in dataclasses.fields(saved) if f.name != "name"]
    out: dict[str, float] = {}
    try:
        for name in names:
            unit = {n: (1000.0 if n == name else 0.0) for n in names}
            mod.RTL_FAMILY_MODELS[family] = type(saved)(family, **unit)
            est = estimate(graph, board, flow="rtl")
            out[name] = (est.lut if name.startswith("lut") else est.carry) / 1000.0
    finally:
        mod.RTL_FAMILY_MODELS[family] = saved
    return out


#: Model forms compared by ``fit``: LUT terms tied together in groups (one constant each).
FORMS = {
    "adder bits": [("lut_per_product_bit", "lut_per_sum_bit")],
    "adder bits + logic bits": [("lut_per_product_bit", "lut_per_sum_bit"), ("lut_per_logic_bit",)],
    "product + sum bits": [("lut_per_product_bit",), ("lut_per_sum_bit",)],
    "product + sum + logic bits": [
        ("lut_per_product_bit",),
        ("lut_per_sum_bit",),
        ("lut_per_logic_bit",),
    ],
}
CARRY_FORMS = {
    "adder bits": [("carry_per_product_bit", "carry_per_sum_bit")],
    "product + sum bits": [("carry_per_product_bit",), ("carry_per_sum_bit",)],
}


def _nonneg_rel_lstsq(x: Any, y: Any) -> Any:
    """Constants >= 0 minimising sum((x @ c / y - 1) ** 2): the best least-squares solution
    over the subsets of columns whose solution has no negative constant."""
    import itertools

    import numpy as np

    a, ones = x / y[:, None], np.ones(len(y))
    best, best_err = np.zeros(x.shape[1]), np.inf
    for k in range(1, x.shape[1] + 1):
        for cols in itertools.combinations(range(x.shape[1]), k):
            c, *_ = np.linalg.lstsq(a[:, cols], ones, rcond=None)
            if (c < 0).any():
                continue
            err = float(((a[:, cols] @ c - 1) ** 2).sum())
            if err < best_err:
                best_err, best = err, np.zeros(x.shape[1])
                best[list(cols)] = c
    return best


def _grouped(feats: list[dict[str, float]], groups: list[tuple[str, ...]]) -> Any:
    import numpy as np

    return np.array([[sum(f[n] for n in g) for g in groups] for f in feats])


def fit(args: argparse.Namespace) -> None:
    """Per family: the constants of each model form on the fitted rows (least squares on the
    relative error, constants >= 0), their leave-one-out error on the fitted rows and their
    error on the held-out rows; then the RtlFamilyModel line of the form with the smallest
    leave-one-out error (forms listed simplest first; a more complex one must win by 0.02)."""
    import numpy as np

    data = _load(Path(args.data))
    graphs: dict[str, Any] = {}
    for family in sorted({r["family"] for r in data["rows"]}):
        rows = [r for r in data["rows"] if r["family"] == family]
        fitted = [r for r in rows if r["design"] not in HELD_OUT]
        held = [r for r in rows if r["design"] in HELD_OUT]
        feats = {
            r["design"]: features(graphs.setdefault(r["design"], build(r["spec"])), r["board"])
            for r in rows
        }
        print(f"--- {family}: {len(fitted)} fitted rows, {len(held)} held-out rows")
        chosen: dict[str, float] = {}
        for target, forms in (("LUT", FORMS), ("CARRY", CARRY_FORMS)):
            y = np.array([r["yosys"][target] for r in fitted], dtype=float)
            hy = np.array([r["yosys"][target] for r in held], dtype=float)
            best = None
            for name, groups in forms.items():
                x = _grouped([feats[r["design"]] for r in fitted], groups)
                hx = _grouped([feats[r["design"]] for r in held], groups).reshape(len(held), -1)
                c = _nonneg_rel_lstsq(x, y)
                loo = np.array(
                    [
                        x[i] @ _nonneg_rel_lstsq(np.delete(x, i, 0), np.delete(y, i)) / y[i]
                        for i in range(len(y))
                    ]
                )
                rat, hrat = x @ c / y, (hx @ c / hy if len(held) else np.zeros(0))
                loo_err = float(np.sqrt(np.mean((loo - 1) ** 2)))
                print(
                    f"{target:5s} {name:28s} constants {np.round(c, 3).tolist()}: fitted "
                    f"{rat.min():.2f}-{rat.max():.2f}, leave-one-out {loo.min():.2f}-"
                    f"{loo.max():.2f} (rms {loo_err:.2f}), held-out "
                    + (f"{hrat.min():.2f}-{hrat.max():.2f}" if len(hrat) else "-")
                )
                if best is None or loo_err < best[0] - 0.02:  # the simpler form on near-ties
                    best = (loo_err, name, groups, c)
            assert best is not None
            for group, value in zip(best[2], best[3], strict=True):
                chosen.update({n: round(float(value), 3) for n in group})
            print(f"  -> {target}: {best[1]} (smallest leave-one-out error)")
        args_txt = ", ".join(f"{chosen.get(n, 0.0)}" for n in LUT_TERMS + CARRY_TERMS)
        print(f'  RtlFamilyModel("{family}", {args_txt})')


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
    a = sub.add_parser("adopt")
    a.add_argument("project", help="a qnet rtl project with open_synth/<board>/synth_report.json")
    a.add_argument("--design", required=True)
    a.add_argument("--note", default="")
    a.add_argument("--data", default=str(DATA))
    args = ap.parse_args()
    {"collect": collect, "table": table, "fit": fit, "adopt": adopt}[args.cmd](args)


if __name__ == "__main__":
    main()
