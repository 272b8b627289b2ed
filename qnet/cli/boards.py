"""``qnet boards``: list the boards qnet knows."""

from __future__ import annotations

from qnet.cli._app import app, console


@app.command("boards")
def boards_command() -> None:
    """List the FPGA boards in boards/ (part, clock, resources, hls4ml backend)."""
    from rich.table import Table

    from qnet.hw.boards import list_boards

    table = Table(title="qnet boards")
    for col in (
        "name",
        "vendor",
        "family",
        "part",
        "MHz",
        "LUT",
        "FF",
        "DSP",
        "BRAM18K",
        "URAM",
        "backend",
    ):
        table.add_column(
            col,
            justify="right" if col in {"MHz", "LUT", "FF", "DSP", "BRAM18K", "URAM"} else "left",
        )
    for b in list_boards():
        r = b.resources
        table.add_row(
            b.name,
            b.vendor,
            b.family,
            b.part,
            f"{b.default_clock_mhz:g}",
            f"{r.lut:,}",
            f"{r.ff:,}",
            f"{r.dsp:,}",
            f"{r.bram_18k:,}",
            f"{r.uram:,}",
            b.hls4ml_backend,
        )
    console.print(table)
