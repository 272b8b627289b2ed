"""``qnet export`` and ``qnet verify``.

``qnet verify`` exits 0 when every requested executor ran and every compared pair is exactly
equal; 2 on any mismatch or, with ``--allow-missing``, when a requested executor did not run
(a :class:`qnet.errors.VerificationError`, after the table is printed); 3 when a required tool
(g++, Verilator) is missing and ``--allow-missing`` is not given.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from qnet.cli._app import (
    app,
    config_option_help,
    console,
    io_type_option,
    resolve_build_options,
    reuse_factor_option,
    strategy_option,
)

if TYPE_CHECKING:
    from qnet.hw.options import BuildOptions


def _build_defaults() -> dict[str, object]:
    # imported here: qnet --help stays light
    from qnet.hw import options

    return {
        "board": options.DEFAULT_BOARD,
        "io_type": options.DEFAULT_IO_TYPE,
        "reuse_factor": options.DEFAULT_REUSE_FACTOR,
        "strategy": options.DEFAULT_STRATEGY,
    }


def _options(opts: dict, clock_period_ns: float | None) -> BuildOptions:
    from qnet.hw.options import BuildOptions

    return BuildOptions(
        board=opts["board"],
        io_type=opts["io_type"],
        reuse_factor=opts["reuse_factor"],
        strategy=opts["strategy"],
        clock_period_ns=clock_period_ns,
    )


@app.command("export")
def export_command(
    model: Path = typer.Argument(
        ..., help="Checkpoint, qnet train run folder, or file.py:function."
    ),
    board: str = typer.Option(
        None, "--board", help="Board name (qnet boards) or board file (default: pynq-z2)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder (refused if not empty without --force)."
    ),
    io_type: str = io_type_option(),
    reuse_factor: str = reuse_factor_option(per_layer=True),
    strategy: str = strategy_option(),
    clock_period_ns: float = typer.Option(
        None, "--clock-ns", help="Clock period (default: the board's)."
    ),
    config: Path = typer.Option(None, "--config", help=config_option_help()),
    formats: list[str] = typer.Option(
        ["hls4ml", "qonnx"], "--format", help="hls4ml and/or qonnx (repeatable)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
) -> None:
    """Write the hls4ml project, QONNX model and HwGraph of a model for a board."""
    from qnet.projects import export_project

    opts = resolve_build_options(
        config,
        board=board,
        io_type=io_type,
        reuse_factor=reuse_factor,
        strategy=strategy,
        defaults=_build_defaults(),
    )
    if clock_period_ns is None and "clock_mhz" in opts:
        clock_period_ns = 1000.0 / opts["clock_mhz"]
    options = _options(opts, clock_period_ns)
    with console.status("exporting (lowering, hls4ml project, QONNX)..."):
        summary = export_project(str(model), out, options, formats=tuple(formats), force=force)
    console.print(f"wrote {summary.out}: {', '.join(summary.files)}")
    console.print(
        f"board {summary.board} ({summary.part}), backend {summary.backend}, "
        f"clock {summary.clock_period_ns:g} ns, {summary.io_type}, reuse factor {summary.reuse_factor}, "
        f"strategy {summary.strategy}"
    )
    console.print(
        f"input {summary.input_type}, output {summary.output_type}, {summary.layers} HwGraph layers"
    )
    for note in summary.notes:
        console.print(f"note: {note}")


@app.command("verify")
def verify_command(
    model: Path = typer.Argument(
        ..., help="Checkpoint, qnet train run folder, or file.py:function."
    ),
    board: str = typer.Option(None, "--board", help="Board name or board file (default: pynq-z2)."),
    n: int = typer.Option(
        500, "--n", help="Number of inputs (test split of the checkpoint's data)."
    ),
    rtl: bool = typer.Option(False, "--rtl", help="Also run the RTL (da4ml + Verilator) executor."),
    allow_missing: bool = typer.Option(
        False,
        "--allow-missing",
        help="Report a requested executor that cannot run as NOT VERIFIED (still exit 2) "
        "instead of stopping with an error.",
    ),
    io_type: str = io_type_option(),
    reuse_factor: str = reuse_factor_option(per_layer=True),
    strategy: str = strategy_option(),
    config: Path = typer.Option(None, "--config", help=config_option_help()),
    seed: int = typer.Option(0, "--seed", help="Seed for random inputs when there is no data set."),
) -> None:
    """Run Brevitas, the simulator and hls4ml C simulation; exit 2 on any mismatch."""
    from qnet.errors import VerificationError
    from qnet.verification import verification_inputs, verify

    opts = resolve_build_options(
        config,
        board=board,
        io_type=io_type,
        reuse_factor=reuse_factor,
        strategy=strategy,
        defaults=_build_defaults(),
    )
    clock = 1000.0 / opts["clock_mhz"] if "clock_mhz" in opts else None
    options = _options(opts, clock)
    with console.status("loading model and inputs..."):
        source, x, where = verification_inputs(str(model), n, seed)
    with console.status(
        f"verifying on {x.shape[0]} inputs ({where}): lowering, hls4ml compile, C simulation..."
    ):
        report = verify(
            source,
            x,
            board=options,
            rtl=rtl,
            allow_missing=allow_missing,
        )
    console.print(
        f"{report.samples} inputs from {where}; board {report.export.get('board')}, "
        f"{opts['io_type']}, {opts['strategy']}, reuse factor {opts['reuse_factor']}"
    )
    console.print(report.table(), highlight=False)
    if not report.all_exact:
        if report.not_verified:
            raise VerificationError(
                f"NOT VERIFIED: {', '.join(report.not_verified)} did not run (see the table above)"
            )
        raise VerificationError("executors disagree (see the table above)")
