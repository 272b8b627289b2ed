"""``qnet demo``: train -> lower -> simulate -> export -> C simulation -> verify -> estimate."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from qnet.cli._app import app, console


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("qnet-demo"), "--out", help="Report folder."),
    epochs: int = typer.Option(20, "--epochs", min=1, help="Training epochs."),
    n: int = typer.Option(200, "--n", min=1, help="Test images verified three ways."),
    force: bool = typer.Option(True, "--force/--no-force", help="Replace an existing report."),
    quiet: bool = typer.Option(False, "--quiet", help="No training progress bar."),
) -> None:
    """The whole product on built-in data: a 4-bit ConvNet2d on digits, from training to a
    bit-exact hls4ml C simulation for the PYNQ-Z2, with a resource estimate."""
    from rich.table import Table

    from qnet.demo import run_demo

    t0 = time.perf_counter()
    result = run_demo(out, epochs=epochs, n_verify=n, force=force, quiet=quiet, log=console.print)
    m = result.metrics
    wall = time.perf_counter() - t0

    acc = Table(title="accuracy on digits (test split)")
    for col in ("executor", "images", "accuracy"):
        acc.add_column(col, justify="left" if col == "executor" else "right")
    n_test = m["simulator_vs_brevitas_total"] // 10
    acc.add_row("Brevitas (torch)", str(n_test), f"{m['accuracy_brevitas']:.2%}")
    acc.add_row("qnet simulator", str(n_test), f"{m['accuracy_simulator']:.2%}")
    n_ver = m["verify"]["samples"]
    acc.add_row("Brevitas (torch)", str(n_ver), f"{m['accuracy_brevitas_on_verified']:.2%}")
    acc.add_row("qnet simulator", str(n_ver), f"{m['accuracy_simulator_on_verified']:.2%}")
    acc.add_row("hls4ml C simulation", str(n_ver), f"{m['accuracy_csim']:.2%}")
    console.print(acc)
    console.print(
        f"simulator == Brevitas on all {n_test} test images: "
        f"{m['simulator_vs_brevitas_exact']:,}/{m['simulator_vs_brevitas_total']:,} outputs equal"
    )
    console.print(m["verify_table"])

    est = m["estimate"]
    board = Table(title=f"estimate on {est['board']} ({est['part']}) at {est['clock_mhz']:g} MHz")
    for col in ("resource", "estimate", "board", "used"):
        board.add_column(col, justify="left" if col == "resource" else "right")
    for key in ("LUT", "FF", "DSP", "BRAM_18K"):
        board.add_row(
            key,
            f"{est[key.lower()]:,}",
            f"{est['available'][key]:,}",
            f"{est['utilisation'][key]:.1f} %",
        )
    console.print(board)
    console.print(
        f"latency {est['latency_cycles']} cycles, II {est['ii_cycles']} cycles, "
        f"{est['throughput_per_s']:,.0f} inferences/s"
    )
    for warning in est.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(
        f"report: {result.out_dir}/ (metrics.json, training.png, confusion.png, resources.png, project/)"
    )
    console.print(f"demo wall time {wall:.1f} s")
    if not m["all_exact"]:
        raise typer.Exit(1)
