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
    if graph.pre or graph.post:
        console.print("[bold]host preprocessing[/bold] (float32, before the input port):")
        for op in graph.pre:
            console.print(f"  {op.describe()}")
        if not graph.pre:
            console.print("  (none: the model quantises its raw input)")
    table = Table(title=f"HwGraph of {path}" + (" (hardware)" if graph.pre or graph.post else ""))
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    if graph.pre or graph.post:
        console.print("[bold]host postprocessing[/bold] (float32, after the output port):")
        for op in graph.post:
            console.print(f"  {op.describe()}")
        if not graph.post:
            console.print("  (none)")
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
        None,
        "--data",
        help="digits, digits-rows or PATH.npz (default: the training data). An uncompressed "
        ".npz (np.savez) is memory-mapped and streamed, so it may be bigger than memory.",
    ),
    split: str = typer.Option("test", "--split", help="test, val or train."),
    seed: int | None = typer.Option(
        None, "--seed", help="Split seed (default: the one the model was trained with)."
    ),
    brevitas: bool = typer.Option(
        True, "--brevitas/--no-brevitas", help="Also run Brevitas and count exact outputs."
    ),
    batch_size: int = typer.Option(
        0, "--batch-size", help="Samples read per batch (0: sized from the model)."
    ),
    memory_mb: float = typer.Option(
        0, "--memory-mb", help="Simulator working memory per chunk in MB (0: its default)."
    ),
) -> None:
    """Simulator accuracy vs Brevitas accuracy on a data split, and the exact-match count."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from qnet.errors import ConfigError
    from qnet.evaluation import simulate_checkpoint

    if batch_size < 0 or memory_mb < 0:
        raise ConfigError("--batch-size and --memory-mb must be >= 0")
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("simulating", total=None)
        r = simulate_checkpoint(
            checkpoint,
            data,
            split,
            seed,
            batch_size=batch_size or None,
            brevitas=brevitas,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            memory_budget=int(memory_mb * 2**20) or None,
        )
    console.print(f"{r.split} split: {r.samples} samples in {r.seconds:.1f} s")
    console.print(f"simulator accuracy: {r.simulator_accuracy:.4f}")
    if r.brevitas_accuracy is not None:
        console.print(f"brevitas accuracy:  {r.brevitas_accuracy:.4f}")
        console.print(f"exact outputs:      {r.exact_outputs} / {r.total_outputs}")
    if r.float32_inexact:
        console.print(
            f"[yellow]Brevitas float32 not exact in: {', '.join(r.float32_inexact)}[/yellow]"
        )
