"""The ``qnet`` command line: a thin layer over the library.

Each subcommand lives in its own module under ``qnet.cli`` and registers itself on
``qnet.cli._app.app``. A :class:`qnet.errors.QnetError` becomes a one-paragraph message on
stderr and the error's exit code (2, or 3 for a missing tool); it never shows a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

__all__ = ["main"]

# Subcommand modules, imported in this order (each registers its commands on the app).
_COMMAND_MODULES = (
    "train",
    "lowering",
    "hls",
    "boards",
    "flow",
    "rtl",
    "demo",
    "fit",
    "dse",
)


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        if importlib.util.find_spec(f"qnet.cli.{name}") is not None:
            importlib.import_module(f"qnet.cli.{name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``qnet`` console script."""
    from qnet.cli._app import app, err_console
    from qnet.errors import QnetError

    _load_commands()
    try:
        # standalone mode: click reports its own usage errors (exit 2) and Ctrl-C (exit 1)
        app(args=argv)
    except QnetError as exc:
        err_console.print(f"[bold red]error[/] ({type(exc).__name__}): {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except OSError as exc:  # unwritable output folder, full disk, ...: name the path, no traceback
        where = f" {exc.filename!r}" if exc.filename else ""
        err_console.print(
            f"[bold red]error[/] (OSError):{where} {exc.strerror or exc}", highlight=False
        )
        sys.exit(2)
