"""``qnet fit``: choose reuse factors, io_type and strategy so a model fits a board."""

from __future__ import annotations

from pathlib import Path

import typer

from qnet.cli._app import app, console


@app.command("fit")
def fit_command(
    source: Path = typer.Argument(
        ..., help="Checkpoint, HwGraph .npz, 'qnet export' project dir, or file.py:function."
    ),
    board: str = typer.Option(..., "--board", help="Board name or board .toml."),
    target_throughput: float = typer.Option(
        None,
        "--target-throughput",
        help="Inferences/s to reach: the cheapest fitting design that reaches it (default: "
        "the fitting design of highest throughput).",
    ),
    margin: float = typer.Option(
        0.2, "--margin", help="Fraction of every resource kept free (0.2: use at most 80 %)."
    ),
    clock_mhz: float = typer.Option(None, "--clock-mhz", help="Clock (default: the board's)."),
    out: Path = typer.Option(
        Path("fit.json"), "--out", help="Where to write the configuration (for --config)."
    ),
) -> None:
    """Fit a model to a board: per-layer reuse factors, io_type and strategy from the estimator.

    Writes the chosen configuration to --out, which 'qnet export', 'qnet verify' and 'qnet
    estimate' take as --config. Exits 2 (writing nothing) when nothing fits, naming the
    closest design.
    """
    from qnet.cli.flow import _estimate_table
    from qnet.errors import NothingFitsError
    from qnet.fitting import fit
    from qnet.sources import load_graph

    graph = load_graph(source)
    with console.status("fitting (estimating every valid reuse factor)..."):
        result = fit(
            graph, board, margin=margin, target_throughput=target_throughput, clock_mhz=clock_mhz
        )
    _estimate_table(result.estimate)
    from rich.table import Table

    alt = Table(title="best design of each io_type x strategy")
    for col in ("io_type", "strategy", "fits", "throughput/s", "peak utilisation %"):
        alt.add_column(col, justify="left" if col in ("io_type", "strategy") else "right")
    for a in result.alternatives:
        alt.add_row(
            a["io_type"],
            a["strategy"],
            "yes" if a["fits"] and a["reaches_target"] else "no",
            f"{a['throughput_per_s']:,.0f}",
            f"{a['peak_utilisation_percent']:.1f}",
        )
    console.print(alt)
    if not result.fits:
        raise NothingFitsError(result.message)
    result.write(out)
    console.print(result.message, highlight=False)
    console.print(f"wrote {out} (use it as --config {out})")
