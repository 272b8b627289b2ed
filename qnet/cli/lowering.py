"""``qnet inspect`` and ``qnet simulate``: the hardware graph and the bit-accurate simulator."""

from __future__ import annotations

from pathlib import Path

import typer

from qnet.cli._app import app, console


@app.command("inspect")
def inspect_command(
    path: str = typer.Argument(
        ...,
        help="A checkpoint (.ckpt or run folder), a saved HwGraph (.npz), an export project "
        "folder, or your own Brevitas model as file.py:function.",
    ),
) -> None:
    """Print the per-layer table of the hardware graph: shapes and exact fixed-point types."""
    from rich.table import Table

    from qnet.sources import load_graph

    graph = load_graph(path)
    rows = graph.summary_rows()
    table = Table(title=f"HwGraph of {path}")
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    inexact = graph.meta.get("float32_inexact", [])
    if inexact:
        console.print(
            f"[yellow]accumulator bound >= 2**24 lsb in {', '.join(inexact)}: Brevitas' float32 "
            "arithmetic is not exact there (the hardware is)[/yellow]"
        )


@app.command("simulate")
def simulate_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by qnet train."),
    data: str = typer.Option(
        None, "--data", help="digits, digits-rows or PATH.npz (default: the training data)."
    ),
    split: str = typer.Option("test", "--split", help="test, val or train."),
    seed: int = typer.Option(0, "--seed", help="Seed of the built-in data split."),
) -> None:
    """Simulator accuracy vs Brevitas accuracy on a data split, and the exact-match count."""
    from qnet.evaluation import simulate_checkpoint

    r = simulate_checkpoint(checkpoint, data, split, seed)
    console.print(f"{r.split} split: {r.samples} samples")
    console.print(f"simulator accuracy: {r.simulator_accuracy:.4f}")
    console.print(f"brevitas accuracy:  {r.brevitas_accuracy:.4f}")
    console.print(f"exact outputs:      {r.exact_outputs} / {r.total_outputs}")
    if r.float32_inexact:
        console.print(
            f"[yellow]Brevitas float32 not exact in: {', '.join(r.float32_inexact)}[/yellow]"
        )
