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
        app(args=argv, standalone_mode=False)
    except QnetError as exc:
        err_console.print(f"[bold red]error[/] ({type(exc).__name__}): {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's own usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            err_console.print("[bold red]aborted[/]")
            sys.exit(130)
        raise
