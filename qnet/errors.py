"""The one error hierarchy of qnet.

Every error a user can cause derives from :class:`QnetError`. The CLI turns one into a
one-paragraph message and a non-zero exit code (2, or 3 for a missing tool), never a
traceback. Messages name the layer, file, field or value at fault and what would be accepted.

:class:`InternalError` is the exception: a broken invariant inside qnet (a bug, not the
user's mistake). It deliberately does not derive from :class:`QnetError`, so that no
``except QnetError`` meant for bad input can swallow it; the CLI prints it with its traceback
and asks for a report.

This module imports nothing: it is the one ``qnet`` module that ``qnet.hw`` may import.
"""

from __future__ import annotations

__all__ = [
    "QnetError",
    "FormatError",
    "DataError",
    "UnsupportedLayerError",
    "BoardError",
    "ToolNotFoundError",
    "CheckpointError",
    "ConfigError",
    "OutputExistsError",
    "VerificationError",
    "ToolError",
    "BuildError",
    "SynthesisError",
    "OpenSynthError",
    "TrainingInterrupted",
    "InternalError",
    "NothingFitsError",
]


class QnetError(Exception):
    """Base class of every error qnet raises on bad input or a missing tool."""

    exit_code: int = 2


class FormatError(QnetError):
    """A fixed-point format is invalid, or a value cannot be represented exactly."""


class DataError(QnetError):
    """Input data is malformed: missing keys, wrong shapes, NaN/inf, bad labels."""


class UnsupportedLayerError(QnetError):
    """A model contains a layer or quantiser qnet cannot lower exactly."""


class BoardError(QnetError):
    """A board file is missing, malformed, or names an unknown board."""


class ToolNotFoundError(QnetError):
    """An external tool (Vivado, Vitis HLS, yosys, verilator, ...) is not installed."""

    exit_code = 3


class CheckpointError(QnetError):
    """A checkpoint file is missing, corrupt, or of the wrong model kind."""


class ConfigError(QnetError):
    """A model, training or export option has an invalid value."""


class OutputExistsError(QnetError):
    """An output path exists and is not empty, and ``--force`` was not given."""


class VerificationError(QnetError):
    """Executors that must agree bit for bit did not."""


class NothingFitsError(QnetError):
    """No build configuration fits the board (``qnet fit``); the message names the closest."""


class ToolError(QnetError):
    """An external tool (compiler, Verilator, synthesis) ran and failed."""


class BuildError(ToolError):
    """A build step failed: g++ for the hls4ml C simulation, Verilator for the RTL model
    (the message holds the end of the compiler's log)."""


class SynthesisError(ToolError):
    """A vendor tool ran and failed (non-zero exit status or no report)."""


class OpenSynthError(ToolError):
    """An open-tool step failed (the message holds the end of the tool's log)."""


class TrainingInterrupted(QnetError):
    """Training was interrupted (Ctrl-C); the last complete checkpoint is intact."""

    exit_code = 130


class InternalError(Exception):
    """A broken invariant inside qnet: a bug in qnet, never the user's mistake.

    Not a :class:`QnetError` (an ``except QnetError`` for bad input must not hide a bug).
    The message says so and asks for a report.
    """

    exit_code: int = 70  # EX_SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} (this is a bug in qnet, please report it)")
