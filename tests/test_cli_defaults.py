"""The CLI's build-option defaults are the ones of qnet.hw.options, and its help says so.

The commands take ``None`` and fill in :mod:`qnet.hw.options` at run time (importing it when
the CLI loads would slow ``qnet --help``), so the help text spells the defaults out: this
test keeps that text equal to the one source.
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from qnet.cli import _load_commands
from qnet.cli._app import app
from qnet.cli.dse import _with_defaults
from qnet.hw import options


@pytest.mark.parametrize("command", ["export", "verify", "sweep", "search"])
def test_help_states_the_options_defaults(command: str) -> None:
    _load_commands()
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = re.sub(r"\s+", " ", result.output)
    for option, value in (
        ("--board", options.DEFAULT_BOARD),
        ("--io-type", options.DEFAULT_IO_TYPE),
        ("--reuse-factor", options.DEFAULT_REUSE_FACTOR),
        ("--strategy", options.DEFAULT_STRATEGY),
    ):
        line = re.search(rf"{option} .*?\(default: ([^)]*)\)", text)
        assert line is not None, f"qnet {command} --help does not state the {option} default"
        assert line.group(1) == str(value), (command, option, line.group(1))


def test_sweep_and_search_fill_in_the_options_defaults() -> None:
    assert _with_defaults(None, None, None, None) == (
        options.DEFAULT_BOARD,
        options.DEFAULT_IO_TYPE,
        options.DEFAULT_REUSE_FACTOR,
        options.DEFAULT_STRATEGY,
    )
    assert _with_defaults("zcu104", "io_stream", 4, "Resource") == (
        "zcu104",
        "io_stream",
        4,
        "Resource",
    )
