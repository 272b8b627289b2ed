"""The one error hierarchy of qnet.

Every error a user can cause derives from :class:`QnetError`. The CLI turns one into a
one-paragraph message and a non-zero exit code (2, or 3 for a missing tool), never a
traceback. Messages name the layer, file, field or value at fault and what would be accepted.
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


class InternalError(QnetError):
    """A broken invariant inside qnet: a bug in qnet, not the user's mistake."""

    exit_code = 70
