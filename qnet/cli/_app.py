"""The typer application every subcommand module registers on.

Subcommand modules import nothing heavy at module level: torch, brevitas and hls4ml are
imported inside the command functions, so ``qnet --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    name="qnet",
    help="Quantised neural networks from Brevitas training to bit-exact FPGA hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Not a terminal (pipes, CI, scripts): wide tables instead of rich's 80-column default, and
# error messages as one unwrapped paragraph.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)


def _version_callback(value: bool) -> None:
    if value:
        from qnet import __version__

        console.print(f"qnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """qnet: train, lower, export, verify and estimate quantised networks for FPGAs."""


def parse_reuse_factor(reuse_factor: str) -> int | dict[str, int]:
    """``4`` or ``fc1=4,conv2=8`` (per HwGraph layer; others 1)."""
    from qnet.errors import ConfigError

    text = reuse_factor.strip()
    try:
        if "=" not in text:
            return int(text)
        out: dict[str, int] = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            out[name.strip()] = int(value)
        return out
    except ValueError:
        raise ConfigError(
            f"--reuse-factor {reuse_factor!r}: give an integer or layer=N pairs (e.g. fc1=4,conv2=8)"
        ) from None


# The hardware build options shared by export, verify, sweep and search. The defaults are
# filled in from qnet.hw.options at run time (importing it here would slow `qnet --help`), so
# the help spells them out; tests/test_cli_defaults.py keeps the text equal to that source.


def io_type_option() -> Any:
    """``--io-type`` (default io_parallel)."""
    return typer.Option(None, "--io-type", help="io_parallel or io_stream (default: io_parallel).")


def strategy_option() -> Any:
    """``--strategy`` (default Latency)."""
    return typer.Option(None, "--strategy", help="Latency or Resource (default: Latency).")


def reuse_factor_option(per_layer: bool) -> Any:
    """``--reuse-factor`` (default 1): one integer, or also ``layer=N`` pairs."""
    if per_layer:
        return typer.Option(
            None, "--reuse-factor", help="N, or layer=N,... per layer (default: 1)."
        )
    return typer.Option(None, "--reuse-factor", help="hls4ml reuse factor (default: 1).")


def config_option_help() -> str:
    """Help text of ``--config`` (one place for export, verify and estimate)."""
    return "Build configuration from 'qnet fit' (fit.json); explicit options override it."


def resolve_build_options(
    config: str | Path | None,
    *,
    board: str | None = None,
    io_type: str | None = None,
    reuse_factor: str | None = None,
    strategy: str | None = None,
    clock_mhz: float | None = None,
    defaults: dict | None = None,
) -> dict:
    """Build options from explicit CLI options, else ``--config``, else ``defaults``.

    Returns a dict with ``board``, ``io_type``, ``reuse_factor`` (parsed), ``strategy`` and
    ``clock_mhz`` (absent keys stay absent when nobody sets them).
    """
    from qnet.fitting import load_build_config

    out: dict = dict(defaults or {})
    if config is not None:
        from_file = load_build_config(config)  # a validated BuildOptions
        out.update(
            {
                k: v
                for k, v in from_file.to_dict().items()
                if v is not None and k != "clock_period_ns"
            }
        )
        if from_file.clock_mhz is not None or from_file.clock_period_ns is not None:
            out["clock_mhz"] = from_file.frequency_mhz
    given = {
        "board": board,
        "io_type": io_type,
        "reuse_factor": None if reuse_factor is None else parse_reuse_factor(reuse_factor),
        "strategy": strategy,
        "clock_mhz": clock_mhz,
    }
    out.update({k: v for k, v in given.items() if v is not None})
    return out
