"""``qnet estimate``, ``qnet synth``: thin wrappers over the library (``qnet sweep`` is in
:mod:`qnet.cli.dse`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from qnet.cli._app import app, config_option_help, console, resolve_build_options


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
    config: Path = typer.Option(None, "--config", help=config_option_help()),
) -> None:
    """Estimate resources, latency and throughput of a model on a board (no vendor tool)."""
    from qnet.errors import ConfigError
    from qnet.hw import options
    from qnet.hw.estimator import estimate

    graph, defaults = _load_graph(source)
    if flow == "rtl":
        defaults.pop("reuse_factor", None)
    opts = resolve_build_options(
        config,
        board=board,
        io_type=io_type,
        reuse_factor=reuse_factor,
        strategy=strategy,
        clock_mhz=clock_mhz,
        defaults=defaults,
    )
    if opts.get("board") is None:
        raise ConfigError("--board is required (e.g. --board pynq-z2; 'qnet boards' lists them)")
    est = estimate(
        graph,
        opts["board"],
        io_type=opts.get("io_type", options.DEFAULT_IO_TYPE),
        reuse_factor=opts.get("reuse_factor", options.DEFAULT_REUSE_FACTOR),
        strategy=opts.get("strategy", options.DEFAULT_STRATEGY),
        clock_mhz=opts.get("clock_mhz"),
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


def _open_flow_tables(res: Any) -> None:
    """Print an open-flow report: steps and tools, then resources against the estimate."""
    from rich.table import Table

    target = f", target {res.target_mhz:g} MHz" if res.target_mhz else ""
    steps = Table(title=f"open flow on {res.board} ({res.part}){target}")
    for col in ("step", "wall time", "tool", "build", "version"):
        steps.add_column(col, justify="right" if col == "wall time" else "left")
    tool_of = {"yosys": ("yosys",), "nextpnr": ("nextpnr-ice40", "nextpnr-ecp5")}
    tool_of["bitstream"] = ("icepack", "ecppack")
    for name, seconds in res.steps:
        tool = next((t for t in tool_of.get(name, ()) if t in res.tools), "")
        info = res.tools.get(tool, {})
        wall = f"{res.step_seconds.get(name, seconds):.1f} s"
        if seconds == 0.0:
            wall += " (resumed)"
        steps.add_row(name, wall, tool, info.get("source", ""), info.get("version", ""))
    total = sum(res.step_seconds.get(name, s) for name, s in res.steps)
    steps.add_section()
    steps.add_row("total", f"{total:.1f} s", "", "", "")
    console.print(steps)
    pnr = res.pnr_resources or {}
    est = res.estimate or {}
    table = Table(title="resources: yosys, after place & route, rtl-flow estimate")
    for col in ("resource", "yosys", "P&R", "estimate", "est/yosys", "est/P&R"):
        table.add_column(col, justify="left" if col == "resource" else "right")

    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:,}"

    def ratio(kind: str, key: str) -> str:
        r = res.ratio.get(kind, {}).get(key)
        return "-" if r is None else f"{r:.2f}"

    for key in ("LUT", "FF", "CARRY", "DSP", "BRAM_18K", "CELLS"):
        if key not in res.resources and key not in pnr:
            continue
        table.add_row(
            key,
            cell(res.resources.get(key)),
            cell(pnr.get(key)),
            cell(est.get(key)),
            ratio("synth", key),
            ratio("pnr", key),
        )
    console.print(table)
    if res.fmax_mhz is not None:
        console.print(f"fmax {res.fmax_mhz:.1f} MHz (nextpnr, target {res.target_mhz:g} MHz)")
    console.print(
        f"FF include up to {res.harness_ff:,} synthesis-harness flops; CELLS: logic cells "
        "in use after packing (LUT, carry and FF share them)",
        markup=False,
    )
    for note in res.notes:
        console.print(f"note: {note}", markup=False)
    if res.yowasp_cache:
        console.print(f"YoWASP compiled-tool cache: {res.yowasp_cache}", markup=False)
    console.print(f"report written to {res.outputs['report']}", markup=False)


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
    if flow == "open":
        from qnet.export.opensynth import run_open_flow

        _open_flow_tables(run_open_flow(project, board, force=force, quiet=quiet))
        return
    est = estimate(
        graph, board, io_type=info.io_type, reuse_factor=info.reuse_factor, strategy=info.strategy
    )
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
