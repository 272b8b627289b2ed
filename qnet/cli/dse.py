"""``qnet sweep`` and ``qnet search``: design-space runs on a local or Ray executor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from qnet.cli._app import (
    app,
    console,
    io_type_option,
    reuse_factor_option,
    strategy_option,
)

_EXECUTOR_HELP = "local (this process, default) or ray (Ray tasks; pip install '.[distributed]')."


@contextmanager
def _live_progress(title: str, quiet: bool) -> Iterator[Any]:
    """A callback that redraws the progress table (finished/running/failed, best so far)."""
    from rich.live import Live

    if quiet:
        yield None
        return
    with Live(console=console, refresh_per_second=2, transient=False) as live:

        def update(board: Any) -> None:
            live.update(board.rich_table(title))

        yield update


def _with_defaults(
    board: str | None, io_type: str | None, reuse_factor: int | None, strategy: str | None
) -> tuple[str, str, int, str]:
    """The estimate options given, each one not given from :mod:`qnet.hw.options`."""
    from qnet.hw import options  # imported here: qnet --help stays light

    return (
        options.DEFAULT_BOARD if board is None else board,
        options.DEFAULT_IO_TYPE if io_type is None else io_type,
        options.DEFAULT_REUSE_FACTOR if reuse_factor is None else reuse_factor,
        options.DEFAULT_STRATEGY if strategy is None else strategy,
    )


def _executor(executor: str, workers: int | None, address: str | None) -> Any:
    from qnet.executors import make_executor

    if workers is None:
        workers = 2 if executor == "ray" else 1
    return make_executor(executor, workers, address)


@app.command("sweep")
def sweep_command(
    model: str = typer.Option(..., "--model", help="Zoo model kind, e.g. convnet2d, mlp."),
    data: str = typer.Option(..., "--data", help="Dataset spec, e.g. digits."),
    w_bits: str = typer.Option("2,4,8", "--w-bits", help="Weight bit widths, comma-separated."),
    a_bits: str = typer.Option("2,4,8", "--a-bits", help="Activation bit widths."),
    board: str = typer.Option(None, "--board", help="Board name or .toml (default: pynq-z2)."),
    out: Path = typer.Option(..., "--out", help="Output folder (resumable)."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per point."),
    io_type: str = io_type_option(),
    reuse_factor: int = reuse_factor_option(per_layer=False),
    strategy: str = strategy_option(),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="Torch threads per training run."),
    executor: str = typer.Option("local", "--executor", help=_EXECUTOR_HELP),
    workers: int = typer.Option(None, "--workers", help="Ray: points in flight (default 2)."),
    address: str = typer.Option(
        None, "--address", help="Ray: an existing cluster ('auto', or 'HEAD_IP:6379')."
    ),
    force: bool = typer.Option(False, "--force", help="Start over in a non-empty folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train a precision grid, estimate each point, write sweep.csv and a Pareto plot."""
    from rich.table import Table

    from qnet.sweep import parse_bits, run_sweep

    ws, as_ = parse_bits(w_bits, "--w-bits"), parse_bits(a_bits, "--a-bits")
    board, io_type, reuse_factor, strategy = _with_defaults(board, io_type, reuse_factor, strategy)
    with (
        _executor(executor, workers, address) as runner,
        _live_progress(f"sweep {model} on {data} ({executor})", quiet) as progress,
    ):
        result = run_sweep(
            model,
            data,
            ws,
            as_,
            board,
            out,
            epochs=epochs,
            io_type=io_type,
            reuse_factor=reuse_factor,
            strategy=strategy,
            seed=seed,
            num_threads=threads,
            force=force,
            quiet=True,
            executor=runner,
            progress=progress,
        )
    table = Table(title=f"sweep: {model} on {data}, {board}")
    for col in ("w", "a", "test acc", "LUT", "FF", "DSP", "BRAM18K", "latency us", "fits"):
        table.add_column(col, justify="right")
    for p in result.points:
        table.add_row(
            str(p.w_bits),
            str(p.a_bits),
            f"{p.test_accuracy:.3f}",
            f"{p.lut:,}",
            f"{p.ff:,}",
            f"{p.dsp:,}",
            f"{p.bram_18k:,}",
            f"{p.latency_us:.3f}",
            "yes" if p.fits else "no",
        )
    console.print(table)
    for w, a, error in result.failed:
        console.print(f"[red]failed[/] w{w}a{a}: {error.splitlines()[0]}", highlight=False)
    console.print(f"wrote {result.csv_path} and {result.plot_path}")
    if result.failed:
        from qnet.errors import QnetError

        raise QnetError(
            f"{len(result.failed)} of {len(result.failed) + len(result.points)} points failed "
            f"(errors in {out}/points/*/error.txt); run the same command again to retry them"
        )


@app.command("search")
def search_command(
    model: str = typer.Option(..., "--model", help="convnet2d, convnet1d or mlp."),
    data: str = typer.Option(..., "--data", help="Dataset spec, e.g. digits."),
    board: str = typer.Option(
        None, "--board", help="Board name or .toml (estimate) (default: pynq-z2)."
    ),
    trials: int = typer.Option(20, "--trials", help="Finished trials the study should hold."),
    out: Path = typer.Option(..., "--out", help="Output folder (study.db: resumable)."),
    objective: str = typer.Option("lut", "--objective", help="lut or latency (vs accuracy)."),
    bits: str = typer.Option("2,3,4,6,8", "--bits", help="Bit widths a layer may take."),
    search_width: bool = typer.Option(
        False, "--search-width", help="Also search a width scale (0.5, 1, 2) of the layers."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per trial."),
    io_type: str = io_type_option(),
    reuse_factor: int = reuse_factor_option(per_layer=False),
    strategy: str = strategy_option(),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="Torch threads per training run."),
    executor: str = typer.Option("local", "--executor", help=_EXECUTOR_HELP),
    workers: int = typer.Option(None, "--workers", help="Ray: trials in flight (default 2)."),
    address: str = typer.Option(
        None, "--address", help="Ray: an existing cluster ('auto', or 'HEAD_IP:6379')."
    ),
    force: bool = typer.Option(False, "--force", help="Start over (deletes the old study)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Optuna multi-objective search of per-layer bits: accuracy vs estimated LUTs or latency."""
    from rich.table import Table

    from qnet.search import run_search
    from qnet.sweep import parse_bits

    bit_list = parse_bits(bits, "--bits")
    board, io_type, reuse_factor, strategy = _with_defaults(board, io_type, reuse_factor, strategy)
    with (
        _executor(executor, workers, address) as runner,
        _live_progress(f"search {model} on {data} ({executor})", quiet) as progress,
    ):
        result = run_search(
            model,
            data,
            board,
            out,
            trials=trials,
            objective=objective,
            bits=bit_list,
            search_width=search_width,
            epochs=epochs,
            seed=seed,
            num_threads=threads,
            io_type=io_type,
            reuse_factor=reuse_factor,
            strategy=strategy,
            force=force,
            executor=runner,
            progress=progress,
        )
    table = Table(title=f"search: {model} on {data}, {board} (Pareto front in bold)")
    for col in ("trial", "w bits", "a bits", "width", "test acc", "LUT", "latency us", "fits"):
        table.add_column(col, justify="right")
    for r in result.rows:
        if r["state"] != "complete":
            table.add_row(str(r["trial"]), r["w_bits"], r["a_bits"], "", "failed", "", "", "")
            continue
        style = "bold" if r["pareto"] else None
        table.add_row(
            str(r["trial"]),
            r["w_bits"],
            r["a_bits"],
            f"{r['width']:g}",
            f"{r['accuracy']:.3f}",
            f"{r['lut']:,}",
            f"{r['latency_us']:.3f}",
            "yes" if r["fits"] else "no",
            style=style,
        )
    console.print(table)
    console.print(
        f"{len(result.pareto)} trial(s) on the Pareto front; wrote {result.csv_path}, "
        f"{result.plot_path} and {result.db_path} (run again to continue the study)"
    )
