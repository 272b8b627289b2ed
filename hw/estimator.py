"""Analytic resource and latency estimate of an :class:`~qnet.hw.graph.HwGraph` on a board.

One entry point, :func:`estimate`, over two unrelated cost models:

- ``flow="hls"`` (default): the hardware qnet exports through hls4ml / Vivado HLS, aimed at
  the C-synthesis estimate (:mod:`qnet.hw.cost_hls`, formulas and calibration there);
- ``flow="rtl"``: the open da4ml Verilog flow synthesised by yosys
  (:mod:`qnet.hw.cost_rtl`, formulas, fitted per-family constants and calibration there).

Both return per-layer :class:`LayerEstimate` rows; this module adds them up into an
:class:`Estimate` (totals, latency, throughput, utilisation of the board, warnings).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qnet.errors import ConfigError
from qnet.hw.boards import RESOURCE_KEYS, Board, resource_dict
from qnet.hw.cost_common import LayerEstimate
from qnet.hw.cost_hls import ESTIMATORS, hls_rows, register_estimator
from qnet.hw.cost_rtl import (
    RTL_FAMILY_MODELS,
    RTL_FAMILY_OF,
    RtlFamilyModel,
    rtl_family_model,
    rtl_rows,
)
from qnet.hw.graph import HwGraph
from qnet.hw.options import DEFAULT_BOARD, BuildOptions, ReuseFactor

__all__ = [
    "Estimate",
    "LayerEstimate",
    "estimate",
    "register_estimator",
    "ESTIMATORS",
    "RESOURCE_KEYS",
    "FLOWS",
    "RTL_FAMILY_MODELS",
    "RTL_FAMILY_OF",
    "RtlFamilyModel",
    "rtl_family_model",
]

FLOWS = ("hls", "rtl")


@dataclass(frozen=True)
class Estimate:
    """Whole-design estimate on one board (totals, per-layer rows, utilisation, warnings)."""

    board: str
    part: str
    clock_mhz: float
    io_type: str
    reuse_factor: int | dict[str, int]
    strategy: str
    layers: tuple[LayerEstimate, ...]
    mults: int
    dsp_mults: int
    lut_mults: int
    free_mults: int
    lut: int
    ff: int
    dsp: int
    bram_18k: int
    uram: int
    latency_cycles: int
    ii_cycles: int
    latency_us: float
    throughput_per_s: float
    available: dict[str, int] = field(default_factory=dict)
    utilisation: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    flow: str = "hls"
    carry: int = 0
    pipeline_stages: int = 0

    def resources(self) -> dict[str, int]:
        """Totals keyed ``LUT``, ``FF``, ``DSP``, ``BRAM_18K``, ``URAM``."""
        return resource_dict(self)

    @property
    def fits(self) -> bool:
        """Whether every resource is within the board's capacity."""
        return all(v <= 100.0 for v in self.utilisation.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (layers as a list of dicts)."""
        out = asdict(self)
        out["layers"] = [asdict(layer) for layer in self.layers]
        out["warnings"] = list(self.warnings)
        out["fits"] = self.fits
        return out


def estimate(
    graph: HwGraph,
    board: BuildOptions | Board | str | Path | None = None,
    io_type: str | None = None,
    reuse_factor: ReuseFactor | None = None,
    strategy: str | None = None,
    clock_mhz: float | None = None,
    flow: str = "hls",
    pipeline_stages: int = 0,
) -> Estimate:
    """Estimate resources, latency and throughput of ``graph`` (hls4ml or da4ml RTL flow).

    Parameters
    ----------
    graph : HwGraph
        The hardware graph (from :func:`qnet.lower` or :meth:`HwGraph.load`).
    board : BuildOptions, Board, str or Path, optional
        The build's :class:`~qnet.hw.options.BuildOptions` (then ``io_type``,
        ``reuse_factor``, ``strategy`` and ``clock_mhz`` must not be given), or just the
        target board (a :class:`Board`, a shipped board name, or a board ``.toml`` path);
        :data:`~qnet.hw.options.DEFAULT_BOARD` when omitted.
    io_type : {"io_parallel", "io_stream"}, optional
        hls4ml IO type (default ``"io_parallel"``).
    reuse_factor : int or mapping of str to int, optional
        Global hls4ml reuse factor (must be valid for every dense/conv layer), or per-layer
        factors ``{layer_name: R}`` (hls4ml's per-layer ``ReuseFactor``; the key ``"default"``
        sets the others, 1 when absent). Default 1.
    strategy : {"Latency", "Resource"}, optional
        hls4ml strategy (case-insensitive; default ``"Latency"``).
    clock_mhz : float, optional
        Clock; defaults to the board's ``default_clock_mhz``.
    flow : {"hls", "rtl"}
        ``"hls"``: the hls4ml / Vivado HLS model. ``"rtl"``: the open RTL flow
        (:func:`qnet.export.to_verilog`, da4ml shift-add logic synthesised by yosys); it is
        fully parallel, so ``reuse_factor`` must be 1 and ``io_type`` / ``strategy`` are
        ignored.
    pipeline_stages : int
        RTL flow only: 0 for combinational logic, N > 0 for N register stages.

    Returns
    -------
    Estimate
        Per-layer rows and totals. Layers of an unknown kind get a row with a note and a
        warning instead of an error.

    Raises
    ------
    ConfigError
        Unknown io_type / strategy / flow, a non-positive clock or reuse factor, or a reuse
        factor that hls4ml would refuse for some layer (the message names the layer and valid
        values); for the rtl flow a reuse factor other than 1, a negative ``pipeline_stages``
        or a board family without an rtl model.
    """
    options = _options(board, io_type, reuse_factor, strategy, clock_mhz)
    if flow not in FLOWS:
        raise ConfigError(f"flow {flow!r} is not supported; use one of {', '.join(FLOWS)}")
    if flow == "rtl":
        rows, warnings = rtl_rows(graph, options, pipeline_stages)
        return _finish(rows, warnings, options, "rtl", int(pipeline_stages))
    if pipeline_stages != 0:
        raise ConfigError("pipeline_stages applies to the rtl flow only (flow='rtl')")
    rows, warnings = hls_rows(graph, options)
    return _finish(rows, warnings, options, "hls", 0)


def _finish(
    rows: list[LayerEstimate],
    warnings: list[str],
    options: BuildOptions,
    flow: str,
    pipeline_stages: int,
) -> Estimate:
    """Totals, latency, throughput and utilisation of the per-layer rows of one flow."""
    board, clock = options.board_spec, options.frequency_mhz
    if flow == "rtl":  # fully parallel: the hls4ml options do not apply
        io_type, strategy, default, per_layer = "io_parallel", "Latency", 1, {}
    else:
        io_type, strategy = options.io_type, options.strategy
        default, per_layer = options.default_reuse_factor, options.per_layer_reuse
    tot = {
        k: sum(getattr(r, k) for r in rows)
        for k in (
            "mults",
            "dsp_mults",
            "lut_mults",
            "free_mults",
            "lut",
            "ff",
            "dsp",
            "bram_18k",
            "uram",
        )
    }
    carry = sum(r.carry for r in rows)
    ii = max((r.ii_cycles for r in rows), default=1)
    if flow == "rtl":
        latency = pipeline_stages
    elif io_type == "io_stream":
        latency = ii + sum(r.latency_cycles for r in rows)
    else:
        latency = sum(r.latency_cycles for r in rows)
    ii = max(ii, 1)
    available = board.resources.as_dict()
    used = {
        "LUT": tot["lut"],
        "FF": tot["ff"],
        "DSP": tot["dsp"],
        "BRAM_18K": tot["bram_18k"],
        "URAM": tot["uram"],
    }
    util: dict[str, float] = {}
    for key, value in used.items():
        cap = available[key]
        if cap == 0:
            util[key] = 0.0 if value == 0 else math.inf
        else:
            util[key] = 100.0 * value / cap
        if util[key] > 100.0:
            warnings.append(
                f"{key}: {value:,} needed, {cap:,} available on {board.name} ({util[key]:.0f}%)"
            )
    return Estimate(
        board=board.name,
        part=board.part,
        clock_mhz=clock,
        io_type=io_type,
        reuse_factor=int(default) if not per_layer else {"default": int(default), **per_layer},
        strategy=strategy,
        layers=tuple(rows),
        mults=tot["mults"],
        dsp_mults=tot["dsp_mults"],
        lut_mults=tot["lut_mults"],
        free_mults=tot["free_mults"],
        lut=tot["lut"],
        ff=tot["ff"],
        dsp=tot["dsp"],
        bram_18k=tot["bram_18k"],
        uram=tot["uram"],
        latency_cycles=int(latency),
        ii_cycles=int(ii),
        latency_us=max(latency, 1) / clock if flow == "rtl" else latency / clock,
        throughput_per_s=clock * 1e6 / ii,
        available=available,
        utilisation=util,
        warnings=tuple(warnings),
        flow=flow,
        carry=carry,
        pipeline_stages=pipeline_stages,
    )


def _options(
    board: BuildOptions | Board | str | Path | None,
    io_type: str | None,
    reuse_factor: ReuseFactor | None,
    strategy: str | None,
    clock_mhz: float | None,
) -> BuildOptions:
    """The build options of an :func:`estimate` call (given whole, or piece by piece)."""
    loose = {
        "io_type": io_type,
        "reuse_factor": reuse_factor,
        "strategy": strategy,
        "clock_mhz": clock_mhz,
    }
    given: dict[str, Any] = {k: v for k, v in loose.items() if v is not None}
    if isinstance(board, BuildOptions):
        if given:
            raise ConfigError(
                f"estimate() got BuildOptions and also {', '.join(sorted(given))}; "
                "set them in the BuildOptions"
            )
        return board
    return BuildOptions(board=DEFAULT_BOARD if board is None else board, **given)
