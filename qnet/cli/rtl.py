"""``qnet rtl``: Verilog (through da4ml) for a checkpoint or an HwGraph file."""

from __future__ import annotations

from pathlib import Path

import typer

from qnet.cli._app import app, console


@app.command("rtl")
def rtl_command(
    model: str = typer.Argument(
        ..., help="Checkpoint or run folder, HwGraph .npz, project folder, or file.py:function."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Project folder: writes OUT/verilog/ and OUT/hwgraph.npz."
    ),
    pipeline_stages: int = typer.Option(
        0, "--pipeline-stages", help="0: combinational; N: about N register stages."
    ),
    board: str = typer.Option(
        "icebreaker",
        "--board",
        help="Target of 'qnet synth OUT --flow open' (unless OUT is a qnet export project).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT/verilog/."),
) -> None:
    """Write bit-exact Verilog of the model's hardware graph (da4ml shift-add logic)."""
    from qnet.projects import rtl_project

    with console.status("tracing the hardware graph through da4ml and writing Verilog..."):
        summary = rtl_project(model, out, pipeline_stages=pipeline_stages, force=force, board=board)
    console.print(f"wrote {summary.verilog} and {summary.graph_file} in {summary.seconds:.1f} s")
    latency = f"{summary.latency} clock cycles" if summary.latency else "combinational"
    console.print(
        f"{summary.layers} layers; ports: {summary.n_inputs} x {summary.input_type} in, "
        f"{summary.n_outputs} x {summary.output_type} out; {latency}; "
        f"da4ml estimate {summary.estimated_luts:,.0f} LUTs"
    )
    console.print(f"synthesise with: qnet synth {summary.project} --flow open")
