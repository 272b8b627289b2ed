"""``qnet estimate``, ``qnet synth``, ``qnet sweep``: thin wrappers over the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from qnet.cli._app import app, console, parse_reuse_factor


def _load_graph(source: Path) -> tuple[Any, dict[str, Any]]:
    """An HwGraph (see :func:`qnet.sources.load_graph`) and, for an export project, its
    export options (board, io_type, reuse_factor, strategy) as defaults."""
    from qnet.sources import load_graph

    info: dict[str, Any] = {}
    if source.is_dir() and (source / "qnet_export.json").is_file():
        from qnet.export.synth import read_export_info

        meta = read_export_info(source)
        info = {
            "board": meta.board,
            "io_type": meta.io_type,
            "reuse_factor": meta.reuse_factor,
            "strategy": meta.strategy,
        }
    return load_graph(source), info


def _estimate_table(
    est: Any, synth: dict[str, Any] | None = None, synth_label: str = "synth"
) -> Any:
    from rich.table import Table

    table = Table(
        title=f"estimate on {est.board} ({est.part}) at {est.clock_mhz:g} MHz, "
        f"{est.io_type}, R={est.reuse_factor}, {est.strategy}"
    )
    for col in (
        "layer",
        "kind",
        "mults",
        "DSP/LUT/free",
        "LUT",
        "FF",
        "DSP",
        "BRAM18K",
        "latency",
        "II",
        "note",
    ):
        table.add_column(col, justify="left" if col in {"layer", "kind", "note"} else "right")
    for r in est.layers:
        table.add_row(
            r.name,
            r.kind,
            f"{r.mults:,}",
            f"{r.dsp_mults}/{r.lut_mults}/{r.free_mults}",
            f"{r.lut:,}",
            f"{r.ff:,}",
            f"{r.dsp:,}",
            f"{r.bram_18k:,}",
            str(r.latency_cycles),
            str(r.ii_cycles),
            r.note,
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        f"{est.mults:,}",
        f"{est.dsp_mults}/{est.lut_mults}/{est.free_mults}",
        f"{est.lut:,}",
        f"{est.ff:,}",
        f"{est.dsp:,}",
        f"{est.bram_18k:,}",
        str(est.latency_cycles),
        str(est.ii_cycles),
        "",
    )
    u = est.utilisation
    table.add_row(
        "board %",
        "",
        "",
        "",
        f"{u['LUT']:.1f}",
        f"{u['FF']:.1f}",
        f"{u['DSP']:.1f}",
        f"{u['BRAM_18K']:.1f}",
        "",
        "",
        "",
    )
    console.print(table)
    console.print(
        f"latency {est.latency_cycles} cycles = {est.latency_us:.3f} us, II {est.ii_cycles}"
        f" cycles -> {est.throughput_per_s:,.0f} inferences/s"
    )
    if getattr(est, "flow", "hls") == "rtl":
        console.print(f"rtl flow (da4ml shift-add): {est.carry:,} carry cells")
    for w in est.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if synth:
        from qnet.export.synth import compare_resources

        cmp = Table(title=f"estimate vs {synth_label}")
        for col in ("resource", "estimate", synth_label, "estimate/" + synth_label):
            cmp.add_column(col, justify="right")
        for key, e, m, ratio in compare_resources(est.resources(), synth):
            cmp.add_row(key, f"{e:,.0f}", f"{m:,.0f}", "-" if ratio is None else f"{ratio:.2f}")
        console.print(cmp)


@app.command("estimate")
def estimate_command(
    source: Path = typer.Argument(
        ..., help="Checkpoint, HwGraph .npz, 'qnet export' project dir, or file.py:function."
    ),
    board: str = typer.Option(None, "--board", help="Board name or board .toml (project default)."),
    io_type: str = typer.Option(None, "--io-type", help="io_parallel or io_stream."),
    reuse_factor: str = typer.Option(
        None, "--reuse-factor", help="hls4ml reuse factor: N, or layer=N,... per layer."
    ),
    strategy: str = typer.Option(None, "--strategy", help="Latency or Resource."),
    clock_mhz: float = typer.Option(None, "--clock-mhz", help="Clock (default: the board's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    plot: Path = typer.Option(None, "--plot", help="Write per-layer resource bars to this PNG."),
    flow: str = typer.Option("hls", "--flow", help="hls (hls4ml/Vivado HLS) or rtl (da4ml+yosys)."),
    pipeline_stages: int = typer.Option(0, "--pipeline-stages", help="rtl flow: register stages."),
) -> None:
    """Estimate resources, latency and throughput of a model on a board (no vendor tool)."""
    from qnet.errors import ConfigError
    from qnet.hw.estimator import estimate

    graph, defaults = _load_graph(source)
    board = board or defaults.get("board")
    if board is None:
        raise ConfigError("--board is required (e.g. --board pynq-z2; 'qnet boards' lists them)")
    default_rf = 1 if flow == "rtl" else defaults.get("reuse_factor", 1)
    est = estimate(
        graph,
        board,
        io_type=io_type or defaults.get("io_type", "io_parallel"),
        reuse_factor=parse_reuse_factor(reuse_factor) if reuse_factor is not None else default_rf,
        strategy=strategy or defaults.get("strategy", "Latency"),
        clock_mhz=clock_mhz,
        flow=flow,
        pipeline_stages=pipeline_stages,
    )
    if plot is not None:
        from qnet.plots import plot_estimate

        plot_estimate(est, plot)
    if as_json:
        print(json.dumps(est.to_dict(), indent=2))
        return
    _estimate_table(est)
    if plot is not None:
        console.print(f"plot written to {plot}")


@app.command("synth")
def synth_command(
    project: Path = typer.Argument(..., help="Project directory written by 'qnet export'."),
    flow: str = typer.Option("vendor", "--flow", help="vendor (Vivado/Vitis HLS) or open (yosys)."),
    cosim: bool = typer.Option(False, "--cosim", help="Also run C/RTL co-simulation."),
    export_ip: bool = typer.Option(True, "--export-ip/--no-export-ip", help="Export the IP."),
    bitstream: bool = typer.Option(False, "--bitstream", help="Build the bitstream (Zynq accel.)."),
    vivado_path: Path = typer.Option(None, "--vivado-path", help="Xilinx install dir or tool."),
    force: bool = typer.Option(False, "--force", help="Redo steps already done."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Less output."),
) -> None:
    """Run synthesis on an exported project, step by step (resumable), and compare with the estimate."""

    from qnet.errors import ConfigError
    from qnet.export.synth import read_export_info, synthesize
    from qnet.hw.boards import load_board
    from qnet.hw.estimator import estimate
    from qnet.hw.graph import HwGraph

    info = read_export_info(project)
    board = load_board(info.board)
    graph = HwGraph.load(project / "hwgraph.npz")
    est = estimate(
        graph, board, io_type=info.io_type, reuse_factor=info.reuse_factor, strategy=info.strategy
    )
    if flow == "open":
        from qnet.export.opensynth import run_open_flow

        res = run_open_flow(project, board, force=force, quiet=quiet)
        for name, seconds in res.steps:
            console.print(f"step {name}: {seconds:.1f} s", markup=False)
        if res.fmax_mhz is not None:
            console.print(f"fmax {res.fmax_mhz:.1f} MHz")
        import json as _json

        meta_file = project / "verilog" / "qnet_rtl.json"
        stages = (
            int(_json.loads(meta_file.read_text()).get("latency", 0)) if meta_file.is_file() else 0
        )
        est = estimate(graph, board, flow="rtl", pipeline_stages=stages)
        _estimate_table(est, dict(res.resources), "open synth")
        if "CARRY" in res.resources:
            console.print(
                f"CARRY cells: estimate {est.carry:,}, open synth {res.resources['CARRY']:,}"
            )
        console.print(f"(open synth FF include up to {res.harness_ff:,} synthesis-harness flops)")
        return
    if flow != "vendor":
        raise ConfigError(f"--flow {flow!r} is not known; use 'vendor' or 'open'")
    result = synthesize(
        project,
        cosim=cosim,
        export=export_ip,
        bitstream=bitstream,
        force=force,
        vivado_path=vivado_path,
        quiet=quiet,
        log=console.print,
    )
    rep = result.report
    if rep is None:
        console.print("[yellow]no csynth report found[/]")
        _estimate_table(est)
        return
    console.print(
        f"csynth ({rep.tool_version}, {rep.part}): latency {rep.latency_best}-{rep.latency_worst} "
        f"cycles, II {rep.interval_min}-{rep.interval_max}, estimated clock "
        f"{rep.estimated_clock_ns} ns (target {rep.target_clock_ns} ns)"
    )
    _estimate_table(est, rep.resources, "csynth")


@app.command("sweep")
def sweep_command(
    model: str = typer.Option(..., "--model", help="Zoo model kind, e.g. convnet2d, mlp."),
    data: str = typer.Option(..., "--data", help="Dataset spec, e.g. digits."),
    w_bits: str = typer.Option("2,4,8", "--w-bits", help="Weight bit widths, comma-separated."),
    a_bits: str = typer.Option("2,4,8", "--a-bits", help="Activation bit widths."),
    board: str = typer.Option("pynq-z2", "--board", help="Board name or .toml."),
    out: Path = typer.Option(..., "--out", help="Output folder (resumable)."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per point."),
    io_type: str = typer.Option("io_parallel", "--io-type"),
    reuse_factor: int = typer.Option(1, "--reuse-factor"),
    strategy: str = typer.Option("Latency", "--strategy"),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Start over in a non-empty folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train a precision grid, estimate each point, write sweep.csv and a Pareto plot."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from qnet.sweep import parse_bits, run_sweep

    ws, as_ = parse_bits(w_bits, "--w-bits"), parse_bits(a_bits, "--a-bits")
    with Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=quiet,
    ) as progress:
        task = progress.add_task("", total=len(ws) * len(as_))

        def on_point(index: int, total: int, status: str) -> None:
            progress.update(task, completed=index, description=status)

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
            force=force,
            quiet=True,
            on_point=on_point,
        )
    from rich.table import Table

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
    console.print(f"wrote {result.csv_path} and {result.plot_path}")
