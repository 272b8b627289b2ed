"""Options of one hardware build: board, IO type, reuse factor(s), strategy, clock.

:class:`BuildOptions` is the one frozen, validated value that :func:`qnet.hw.estimate`, the
hls4ml export, the project writer, verify and the CLI take, and this module is the one place
that defines the defaults (:data:`DEFAULT_BOARD`, :data:`DEFAULT_IO_TYPE`, ...) and the
accepted values (:data:`IO_TYPES`, :data:`STRATEGIES`).

:func:`valid_reuse_factors` is the one statement of which reuse factors a matrix-vector
product accepts. It is hls4ml's rule, and it lives in ``hw/`` because it describes the
hardware the hls cost model estimates: hls4ml unrolls an ``n_in x n_out`` product into
``n_in * n_out / R`` multipliers only for these ``R``, so the estimate must refuse the same
values the export refuses (``tests/export/test_reuse_factors.py`` checks it against hls4ml
itself). Likewise ``io_type`` and ``strategy`` are hls4ml's names for two architecture choices
the hls cost model prices (parallel ports vs streams; constant-folded vs BRAM weights); the
rtl cost model and the Verilog export ignore them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from qnet.errors import ConfigError
from qnet.hw.boards import Board, load_board
from qnet.hw.graph import Conv, Dense, Layer

__all__ = [
    "BuildOptions",
    "DEFAULT_BOARD",
    "DEFAULT_IO_TYPE",
    "DEFAULT_REUSE_FACTOR",
    "DEFAULT_STRATEGY",
    "IO_TYPES",
    "STRATEGIES",
    "ReuseFactor",
    "common_reuse_factors",
    "matrix_size",
    "normalise_strategy",
    "valid_reuse_factors",
]

#: Board of a build when none is given.
DEFAULT_BOARD = "pynq-z2"
#: hls4ml IO types: every tensor a parallel port, or channels streamed pixel by pixel.
IO_TYPES = ("io_parallel", "io_stream")
DEFAULT_IO_TYPE = "io_parallel"
#: hls4ml strategies (accepted case-insensitively, stored in this spelling).
STRATEGIES = ("Latency", "Resource")
DEFAULT_STRATEGY = "Latency"
DEFAULT_REUSE_FACTOR = 1

#: A global reuse factor, or ``{layer_name: R}`` with an optional ``"default"`` key.
ReuseFactor = int | Mapping[str, int]


def normalise_strategy(strategy: object) -> str:
    """``"latency"`` -> ``"Latency"``; :class:`ConfigError` for anything not in STRATEGIES."""
    spelled = {s.lower(): s for s in STRATEGIES}.get(str(strategy).lower())
    if not isinstance(strategy, str) or spelled is None:
        raise ConfigError(
            f"strategy {strategy!r} is not supported; use one of {', '.join(STRATEGIES)}"
        )
    return spelled


def _check_positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _check_positive_clock(value: object, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"{field_name} must be a number > 0, got {value!r}")
    if not float(value) > 0 or not math.isfinite(float(value)):
        raise ConfigError(f"{field_name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class BuildOptions:
    """How one hardware build is configured (validated on creation).

    Parameters
    ----------
    board : str, Path or Board
        A shipped board name (``"pynq-z2"``), a board ``.toml`` file, or a :class:`Board`.
        Checked on creation (:class:`~qnet.errors.BoardError` for an unknown board).
    io_type : {"io_parallel", "io_stream"}
        hls4ml IO type.
    reuse_factor : int or mapping of str to int
        Global hls4ml reuse factor, or per-layer factors ``{layer_name: R}`` where the key
        ``"default"`` sets the other layers (1 when absent). Whether a factor is valid for a
        layer depends on its size (:func:`valid_reuse_factors`) and is checked where the
        graph is known (estimate, export).
    strategy : {"Latency", "Resource"}
        hls4ml strategy, case-insensitive (stored as spelled in :data:`STRATEGIES`).
    clock_mhz, clock_period_ns : float, optional
        The clock, given either way (not both); the board's ``default_clock_mhz`` when
        neither is given. Kept as given, so no MHz <-> ns round trip changes a figure.
    """

    board: str | Path | Board = DEFAULT_BOARD
    io_type: str = DEFAULT_IO_TYPE
    reuse_factor: ReuseFactor = DEFAULT_REUSE_FACTOR
    strategy: str = DEFAULT_STRATEGY
    clock_mhz: float | None = None
    clock_period_ns: float | None = None
    _board: Board = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.board, str | Path | Board):
            raise ConfigError(
                f"board must be a board name, a .toml path or a Board, got {self.board!r}"
            )
        object.__setattr__(self, "_board", load_board(self.board))
        if self.io_type not in IO_TYPES:
            raise ConfigError(
                f"io_type {self.io_type!r} is not supported; use one of {', '.join(IO_TYPES)}"
            )
        object.__setattr__(self, "strategy", normalise_strategy(self.strategy))
        object.__setattr__(self, "reuse_factor", _check_reuse_factor(self.reuse_factor))
        if self.clock_mhz is not None and self.clock_period_ns is not None:
            raise ConfigError(
                f"give the clock either as clock_mhz ({self.clock_mhz!r}) or as "
                f"clock_period_ns ({self.clock_period_ns!r}), not both"
            )
        if self.clock_mhz is not None:
            object.__setattr__(self, "clock_mhz", _check_positive_clock(self.clock_mhz, "clock"))
        if self.clock_period_ns is not None:
            period = _check_positive_clock(self.clock_period_ns, "clock_period_ns")
            object.__setattr__(self, "clock_period_ns", period)

    @property
    def board_spec(self) -> Board:
        """The loaded :class:`Board`."""
        return self._board

    @property
    def frequency_mhz(self) -> float:
        """The clock in MHz (given, derived from the period, or the board's default)."""
        if self.clock_mhz is not None:
            return self.clock_mhz
        if self.clock_period_ns is not None:
            return 1000.0 / self.clock_period_ns
        return float(self._board.default_clock_mhz)

    @property
    def period_ns(self) -> float:
        """The clock period in ns (given, derived from the frequency, or the board's)."""
        if self.clock_period_ns is not None:
            return self.clock_period_ns
        return 1000.0 / self.frequency_mhz

    @property
    def default_reuse_factor(self) -> int:
        """The reuse factor of layers without their own entry."""
        if isinstance(self.reuse_factor, Mapping):
            return int(self.reuse_factor.get("default", DEFAULT_REUSE_FACTOR))
        return int(self.reuse_factor)

    @property
    def per_layer_reuse(self) -> dict[str, int]:
        """``{layer_name: R}`` of the layers given their own factor (no ``"default"`` key)."""
        if isinstance(self.reuse_factor, Mapping):
            return {k: int(v) for k, v in self.reuse_factor.items() if k != "default"}
        return {}

    def reuse_for(self, layer_name: str) -> int:
        """The reuse factor of one layer."""
        return self.per_layer_reuse.get(layer_name, self.default_reuse_factor)

    def check_layer_names(self, names: set[str] | frozenset[str]) -> None:
        """:class:`ConfigError` when a per-layer reuse factor names a layer not in ``names``."""
        unknown = sorted(set(self.per_layer_reuse) - set(names))
        if unknown:
            raise ConfigError(f"reuse factor given for unknown layer(s) {', '.join(unknown)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (the board as given: name or path; a Board as its name)."""
        board = self.board.name if isinstance(self.board, Board) else str(self.board)
        rf = self.reuse_factor
        return {
            "board": board,
            "io_type": self.io_type,
            "reuse_factor": dict(rf) if isinstance(rf, Mapping) else int(rf),
            "strategy": self.strategy,
            "clock_mhz": self.clock_mhz,
            "clock_period_ns": self.clock_period_ns,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildOptions:
        """Inverse of :meth:`to_dict` (absent fields take their defaults; unknown keys and bad
        values raise :class:`ConfigError`)."""
        known = {"board", "io_type", "reuse_factor", "strategy", "clock_mhz", "clock_period_ns"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown build option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**{k: v for k, v in data.items() if v is not None})


def _check_reuse_factor(value: Any) -> ReuseFactor:
    if isinstance(value, Mapping):
        checked: dict[str, int] = {}
        for key, rf in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"per-layer reuse factors are keyed by layer name, got {key!r}")
            checked[key] = _check_positive_int(rf, f"reuse factor ({key})")
        return MappingProxyType(checked)
    return _check_positive_int(value, "reuse factor (default)")


# ----------------------------------------------------------------------------- reuse factors
def _reuse_factor_ok(n_in: int, n_out: int, rf: int) -> bool:
    """hls4ml 1.3's ``FPGABackend._validate_reuse_factor`` (``backends/fpga/fpga_backend.py``)."""
    multfactor = min(n_in, rf)
    multiplier_limit = math.ceil((n_in * n_out) / multfactor)
    ok = (multiplier_limit % n_out == 0) or (rf >= n_in)
    ok = ok and ((rf % n_in == 0) or (rf < n_in))
    return ok and ((n_in * n_out) % rf == 0)


def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """Reuse factors hls4ml accepts for an ``n_in`` x ``n_out`` matrix-vector product (ascending).

    The one definition in qnet (estimate and the hls4ml export both use it). Mirrors
    ``get_valid_reuse_factors`` of hls4ml 1.3; only divisors of ``n_in * n_out`` can pass,
    so only those are tried.
    """
    n_in, n_out = int(n_in), int(n_out)
    if n_in < 1 or n_out < 1:
        raise ConfigError(f"a matrix-vector product needs n_in, n_out >= 1, got {n_in} x {n_out}")
    total = n_in * n_out
    divisors: set[int] = set()
    for d in range(1, math.isqrt(total) + 1):
        if total % d == 0:
            divisors.update((d, total // d))
    return [rf for rf in sorted(divisors) if _reuse_factor_ok(n_in, n_out, rf)]


def matrix_size(layer: Layer) -> tuple[int, int] | None:
    """``(n_in, n_out)`` of a dense/conv layer's matrix-vector product, else ``None``.

    Dense: its weight matrix; convolution: the im2col view (``n_in = C_in * prod(kernel)``) of
    its plain equivalent (:meth:`~qnet.hw.graph.Conv.dense_equivalent`), as hls4ml unrolls it.
    """
    if isinstance(layer, Dense):
        return layer.in_features, layer.out_features
    if isinstance(layer, Conv):
        # grouped/dilated convolutions go to hls4ml as their plain equivalent
        plain = layer.dense_equivalent()
        return plain.in_channels * int(np.prod(plain.kernel)), plain.out_features
    return None


def common_reuse_factors(layers: Iterable[Layer]) -> list[int]:
    """Reuse factors valid for every matrix-vector layer in ``layers`` (``[1]`` if none)."""
    common: set[int] | None = None
    for layer in layers:
        size = matrix_size(layer)
        if size is None:
            continue
        valid = set(valid_reuse_factors(*size))
        common = valid if common is None else common & valid
    return sorted(common if common is not None else {1})
