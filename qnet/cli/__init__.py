"""The ``qnet`` command line: a thin layer over the library.

Each subcommand lives in its own module under ``qnet.cli`` and registers itself on
``qnet.cli._app.app``. A :class:`qnet.errors.QnetError` becomes a one-paragraph message on
stderr and the error's exit code (2, or 3 for a missing tool); it never shows a traceback.
"""

from __future__ import annotations

import sys
import traceback

__all__ = ["main"]


def _load_commands() -> None:
    # Each subcommand module registers its commands on the app when imported; the order here
    # is the order of ``qnet --help``.
    # isort: off
    import qnet.cli.train
    import qnet.cli.lowering
    import qnet.cli.hls
    import qnet.cli.boards
    import qnet.cli.flow
    import qnet.cli.rtl
    import qnet.cli.demo
    import qnet.cli.fit
    import qnet.cli.dse  # noqa: F401
    # isort: on


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``qnet`` console script."""
    from qnet.cli._app import app, err_console
    from qnet.errors import InternalError, QnetError

    _load_commands()
    try:
        # standalone mode: click reports its own usage errors (exit 2) and Ctrl-C (exit 1)
        app(args=argv)
    except QnetError as exc:
        err_console.print(f"[bold red]error[/] ({type(exc).__name__}): {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except InternalError as exc:  # a bug in qnet: the traceback belongs in the report
        traceback.print_exc(file=sys.stderr)
        err_console.print(f"[bold red]internal error[/]: {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except OSError as exc:  # unwritable output folder, full disk, ...: name the path, no traceback
        where = f" {exc.filename!r}" if exc.filename else ""
        err_console.print(
            f"[bold red]error[/] (OSError):{where} {exc.strerror or exc}", highlight=False
        )
        sys.exit(2)
