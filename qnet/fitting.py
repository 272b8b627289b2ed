"""Fit a model to a board: choose per-layer reuse factors, io_type and strategy.

:func:`fit` searches the hls4ml build options of an :class:`~qnet.hw.graph.HwGraph` with the
analytic estimator (:func:`qnet.hw.estimate`) as its only cost model:

- every Dense/Conv layer gets a reuse factor hls4ml accepts for it
  (:func:`qnet.hw.options.valid_reuse_factors`), every ``io_type`` x ``strategy`` pair is
  tried;
- a design *fits* when every resource stays within ``(1 - margin)`` of the board's capacity
  (default margin 0.2: at most 80 % of LUT, FF, DSP, BRAM and URAM, headroom for the estimate's
  error and for the AXI wrappers and control logic it does not model);
- without a target, the fitting design with the highest throughput wins (then the lowest
  latency, then the lowest peak utilisation); with ``target_throughput`` (inferences/s), the
  fitting design with the lowest peak utilisation among those that reach it.

How. A layer's estimate depends only on its own reuse factor (and on io_type / strategy), and
the design's initiation interval (II) is the largest layer II, so for each candidate design II
``T`` each layer independently takes its cheapest reuse factor whose layer II is at most ``T``.
The rows of every (layer, reuse factor) are computed with as many estimator calls as the
longest list of valid reuse factors; the scan over ``T`` then only adds rows. The chosen
configuration is estimated once more as a whole, and that estimate is what is reported.

The result serialises to a JSON file (:meth:`FitResult.write`: a format tag, the fields of
the chosen :class:`~qnet.hw.options.BuildOptions`, and a ``fit`` record of the estimate) that
``qnet export``, ``qnet verify`` and ``qnet estimate`` read with ``--config``
(:func:`load_build_config`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qnet.errors import ConfigError, InternalError
from qnet.hw.atomic import atomic_write

__all__ = [
    "DEFAULT_MARGIN",
    "FitResult",
    "fit",
    "load_build_config",
    "CONFIG_FORMAT",
]

#: Fraction of every board resource kept free by default.
DEFAULT_MARGIN = 0.2
#: ``format`` field of a build-configuration file.
CONFIG_FORMAT = "qnet-build-config/1"


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` chose (or, when nothing fits, the closest design).

    Attributes
    ----------
    fits : bool
        The design fits the board within the margin (and reaches the target throughput, when
        one was given).
    build_options : qnet.hw.options.BuildOptions
        The chosen board, io_type, strategy, per-layer reuse factors and clock.
    estimate : qnet.hw.estimator.Estimate
        Whole-design estimate of ``build_options``.
    margin : float
    target_throughput : float or None
    message : str
        One paragraph for the user: what was chosen and why, or why nothing fits and what is
        closest.
    designs_tried : int
        Designs scanned (one per io_type x strategy x candidate II).
    alternatives : tuple of dict
        The best design of each io_type x strategy pair (``io_type``, ``strategy``, ``fits``,
        ``throughput_per_s``, ``peak_utilisation``), for the record.
    """

    fits: bool
    build_options: Any
    estimate: Any
    margin: float
    target_throughput: float | None
    message: str
    designs_tried: int
    alternatives: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def options(self) -> dict[str, Any]:
        """``build_options`` as a plain dict (:meth:`BuildOptions.to_dict`)."""
        return dict(self.build_options.to_dict())

    @property
    def peak_utilisation(self) -> float:
        """Largest utilisation over the board's resources, in percent."""
        return max(self.estimate.utilisation.values(), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """The build-configuration file's content: the format tag, the
        :class:`~qnet.hw.options.BuildOptions` fields, then the fit record."""
        est = self.estimate
        return {
            "format": CONFIG_FORMAT,
            **self.build_options.to_dict(),
            "fit": {
                "fits": self.fits,
                "margin": self.margin,
                "target_throughput_per_s": self.target_throughput,
                "message": self.message,
                "designs_tried": self.designs_tried,
                "estimate": {
                    "resources": est.resources(),
                    "utilisation_percent": {k: round(v, 2) for k, v in est.utilisation.items()},
                    "latency_cycles": est.latency_cycles,
                    "ii_cycles": est.ii_cycles,
                    "latency_us": est.latency_us,
                    "throughput_per_s": est.throughput_per_s,
                },
                "alternatives": list(self.alternatives),
            },
        }

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        return atomic_write(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")


@dataclass
class _Plan:
    """The cheapest design of one io_type x strategy pair at one candidate II."""

    io_type: str
    strategy: str
    ii: int
    reuse: dict[str, int]
    totals: dict[str, int]
    ratio: float  # peak used / budget over the resources (<= 1: fits)


def _mac_layers(graph: Any) -> list[Any]:
    from qnet.hw.graph import Conv, Dense

    return [layer for layer in graph.layers if isinstance(layer, Dense | Conv)]


def _layer_size(layer: Any) -> tuple[int, int]:
    n_out = int(layer.weight.shape[0])
    return int(layer.weight.reshape(n_out, -1).shape[1]), n_out


def _peak_ratio(totals: Mapping[str, int], budget: Mapping[str, float]) -> float:
    worst = 0.0
    for key, used in totals.items():
        cap = budget[key]
        worst = max(worst, (math.inf if used > 0 else 0.0) if cap <= 0 else used / cap)
    return worst


def _rows_for(
    graph: Any, board: Any, io_type: str, strategy: str, clock_mhz: float, options: dict[str, list]
) -> tuple[dict[str, dict[int, Any]], list[Any]]:
    """Per MAC layer, the estimate row of each valid reuse factor; and the other layers' rows."""
    from qnet.hw.estimator import estimate

    longest = max((len(v) for v in options.values()), default=1)
    rows: dict[str, dict[int, Any]] = {name: {} for name in options}
    fixed: list[Any] = []
    for k in range(longest):
        reuse = {name: rfs[min(k, len(rfs) - 1)] for name, rfs in options.items()}
        est = estimate(graph, board, io_type, reuse, strategy, clock_mhz)
        for row in est.layers:
            if row.name in rows:
                rows[row.name][reuse[row.name]] = row
            elif k == 0:
                fixed.append(row)
    return rows, fixed


def _plans(
    graph: Any,
    board: Any,
    io_type: str,
    strategy: str,
    clock_mhz: float,
    budget: Mapping[str, float],
    options: dict[str, list[int]],
) -> list[_Plan]:
    """The cheapest design at every candidate II, ascending II."""
    from qnet.hw.boards import resource_dict

    rows, fixed = _rows_for(graph, board, io_type, strategy, clock_mhz, options)
    base = {k: 0 for k in budget}
    for row in fixed:
        for key, value in resource_dict(row).items():
            base[key] += value
    fixed_ii = max((row.ii_cycles for row in fixed), default=1)
    layer_iis = {r.ii_cycles for per in rows.values() for r in per.values()}
    floor = max([fixed_ii] + [min(r.ii_cycles for r in per.values()) for per in rows.values()])
    # Per-layer choice by a weighted sum of its resources over the budget: equal weights,
    # then each resource in turn weighted up (so a design short of one resource can trade it
    # for another); the cheapest (lowest peak ratio) of these designs represents this II.
    keys = [k for k in budget if budget[k] > 0]
    weightings = [dict.fromkeys(keys, 1.0)] + [
        {k: (1.0 if k == hot else 0.01) for k in keys} for hot in keys
    ]
    plans = []
    for ii in sorted(v for v in layer_iis | {floor} if v >= floor):
        best_plan: _Plan | None = None
        for weights in weightings:
            totals = dict(base)
            reuse: dict[str, int] = {}
            for name, per in rows.items():
                best = None
                for rf, row in per.items():
                    if row.ii_cycles > ii:
                        continue
                    res = resource_dict(row)
                    cost = sum(
                        weights.get(k, 0.0) * v / budget[k] for k, v in res.items() if k in weights
                    )
                    cost += sum(1e9 * v for k, v in res.items() if k not in weights)
                    rank = (cost, row.latency_cycles, -rf)
                    if best is None or rank < best[0]:
                        best = (rank, rf, res)
                if best is None:  # pragma: no cover - floor guarantees an option
                    raise InternalError(f"fit: no reuse factor of layer {name!r} reaches II {ii}")
                reuse[name] = best[1]
                for key, value in best[2].items():
                    totals[key] += value
            plan = _Plan(
                io_type, strategy, max(ii, fixed_ii), reuse, totals, _peak_ratio(totals, budget)
            )
            if best_plan is None or plan.ratio < best_plan.ratio:
                best_plan = plan
        assert best_plan is not None
        plans.append(best_plan)
    return plans


def fit(
    graph: Any,
    board: Any,
    *,
    margin: float = DEFAULT_MARGIN,
    target_throughput: float | None = None,
    clock_mhz: float | None = None,
    io_types: Sequence[str] | None = None,
    strategies: Sequence[str] | None = None,
) -> FitResult:
    """Choose hls4ml build options that fit ``graph`` on ``board``.

    Parameters
    ----------
    graph : HwGraph
        The lowered model (:func:`qnet.lower`, :func:`qnet.sources.load_graph`).
    board : Board or str
        Board object, shipped board name or board ``.toml`` path.
    margin : float
        Fraction of every resource to keep free, in [0, 1); 0.2 means at most 80 % of each.
    target_throughput : float, optional
        Inferences per second to reach. Given, the cheapest (lowest peak utilisation) fitting
        design that reaches it wins; otherwise the fitting design of highest throughput.
    clock_mhz : float, optional
        Clock (default: the board's).
    io_types, strategies : sequence of str, optional
        Restrict the search (default: ``io_parallel``/``io_stream`` x ``Latency``/``Resource``).

    Returns
    -------
    FitResult
        ``result.fits`` says whether anything fits; when nothing does, ``options`` and
        ``estimate`` are the closest design and ``message`` says by how much it misses.

    Raises
    ------
    ConfigError
        A margin outside [0, 1), a non-positive target throughput or clock, an unknown io_type
        or strategy, or a graph without any layer the estimator can size.
    """
    from qnet.hw.boards import load_board
    from qnet.hw.estimator import estimate
    from qnet.hw.options import IO_TYPES, STRATEGIES, BuildOptions, valid_reuse_factors

    board_obj = load_board(board)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1:
        raise ConfigError(
            f"margin must be a fraction in [0, 1) (0.2 = keep 20 % free), got {margin!r}"
        )
    if target_throughput is not None and not (
        isinstance(target_throughput, int | float)
        and math.isfinite(target_throughput)
        and target_throughput > 0
    ):
        raise ConfigError(
            f"target throughput must be a positive number of inferences/s, got {target_throughput!r}"
        )
    clock = float(clock_mhz if clock_mhz is not None else board_obj.default_clock_mhz)
    if not clock > 0:
        raise ConfigError(f"clock must be > 0 MHz, got {clock_mhz!r}")
    io_list = list(io_types or IO_TYPES)
    strat_list = list(strategies or STRATEGIES)
    for value, allowed, what in (
        (io_list, IO_TYPES, "io_type"),
        (strat_list, STRATEGIES, "strategy"),
    ):
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ConfigError(f"{what} {bad[0]!r} is not supported; use {', '.join(allowed)}")
    if board_obj.hls4ml_backend == "none":
        raise ConfigError(
            f"board {board_obj.name!r} has no hls4ml backend (open-flow board): 'qnet fit' "
            "chooses hls4ml build options; use 'qnet estimate --flow rtl' for the RTL flow"
        )

    options = {layer.name: valid_reuse_factors(*_layer_size(layer)) for layer in _mac_layers(graph)}
    available = board_obj.resources.as_dict()
    budget = {k: v * (1.0 - margin) for k, v in available.items()}
    target_ii = None if target_throughput is None else math.floor(clock * 1e6 / target_throughput)
    if target_ii is not None and target_ii < 1:
        raise ConfigError(
            f"target throughput {target_throughput:,.0f}/s needs an II below one cycle at "
            f"{clock:g} MHz (at most {clock * 1e6:,.0f}/s)"
        )

    tried = 0
    best_per_pair: list[_Plan] = []  # per pair: its winner (fitting) or its closest
    for io_type in io_list:
        for strategy in strat_list:
            plans = _plans(graph, board_obj, io_type, strategy, clock, budget, options)
            tried += len(plans)
            fitting = [p for p in plans if p.ratio <= 1.0]
            if target_ii is not None:
                reach = [p for p in fitting if p.ii <= target_ii]
                pick = min(reach, key=lambda p: (p.ratio, p.ii)) if reach else None
            else:
                pick = min(fitting, key=lambda p: (p.ii, p.ratio)) if fitting else None
            if pick is None:  # closest: the fastest fitting one, else the cheapest of all
                pick = (
                    min(fitting, key=lambda p: (p.ii, p.ratio))
                    if fitting
                    else min(plans, key=lambda p: (p.ratio, p.ii))
                )
            best_per_pair.append(pick)

    def estimate_of(plan: _Plan) -> Any:
        return estimate(graph, board_obj, plan.io_type, plan.reuse, plan.strategy, clock)

    def ok(plan: _Plan) -> bool:
        return plan.ratio <= 1.0 and (target_ii is None or plan.ii <= target_ii)

    estimates = {id(p): estimate_of(p) for p in best_per_pair}
    for plan in best_per_pair:
        est = estimates[id(plan)]
        if (
            est.resources() != {k: int(v) for k, v in plan.totals.items()}
            or est.ii_cycles != plan.ii
        ):
            raise InternalError(
                f"fit: summed layer rows {plan.totals} (II {plan.ii}) differ from the whole "
                f"estimate {est.resources()} (II {est.ii_cycles}); a bug in qnet"
            )
    winners = [p for p in best_per_pair if ok(p)]
    if winners:
        if target_ii is None:
            chosen = min(winners, key=lambda p: (p.ii, estimates[id(p)].latency_cycles, p.ratio))
        else:
            chosen = min(winners, key=lambda p: (p.ratio, estimates[id(p)].latency_cycles))
    else:
        fitting = [p for p in best_per_pair if p.ratio <= 1.0]
        chosen = (
            min(fitting, key=lambda p: (p.ii, p.ratio))
            if fitting
            else min(best_per_pair, key=lambda p: (p.ratio, p.ii))
        )
    est = estimates[id(chosen)]
    opts = BuildOptions(
        board=str(Path(str(board)).resolve())
        if Path(str(board)).suffix == ".toml"
        else board_obj.name,
        io_type=chosen.io_type,
        reuse_factor=dict(chosen.reuse),
        strategy=chosen.strategy,
        clock_mhz=clock,
    )
    alternatives = tuple(
        {
            "io_type": p.io_type,
            "strategy": p.strategy,
            "fits": p.ratio <= 1.0,
            "reaches_target": target_ii is None or p.ii <= target_ii,
            "throughput_per_s": estimates[id(p)].throughput_per_s,
            "peak_utilisation_percent": round(
                max(estimates[id(p)].utilisation.values(), default=0.0), 2
            ),
        }
        for p in best_per_pair
    )
    message = _message(bool(winners), chosen, est, board_obj.name, margin, target_throughput)
    return FitResult(
        fits=bool(winners),
        build_options=opts,
        estimate=est,
        margin=float(margin),
        target_throughput=None if target_throughput is None else float(target_throughput),
        message=message,
        designs_tried=tried,
        alternatives=alternatives,
    )


def _binding(est: Any) -> str:
    key = max(est.utilisation, key=lambda k: est.utilisation[k])
    return f"{key} {est.utilisation[key]:.0f} %"


def _message(
    ok: bool, plan: _Plan, est: Any, board: str, margin: float, target: float | None
) -> str:
    limit = f"{100 * (1 - margin):.0f} %"
    what = f"{plan.io_type}, {plan.strategy}, reuse factors {plan.reuse}"
    if ok:
        goal = (
            "highest estimated throughput"
            if target is None
            else f"lowest peak utilisation reaching {target:,.0f}/s"
        )
        return (
            f"fits {board} within {limit} of every resource ({goal}): {what}; "
            f"{est.throughput_per_s:,.0f} inferences/s, latency {est.latency_us:.3f} us, "
            f"peak {_binding(est)}"
        )
    if plan.ratio <= 1.0:  # fits, but not at the target throughput
        return (
            f"no design fits {board} within {limit} of every resource at {target:,.0f}/s; the "
            f"closest is the fastest that fits: {what} at {est.throughput_per_s:,.0f}/s "
            f"(peak {_binding(est)})"
        )
    return (
        f"nothing fits {board} within {limit} of every resource, even with the largest valid "
        f"reuse factors; the closest is {what} at peak {_binding(est)} "
        f"({plan.ratio:.2f}x the budget): use fewer bits, a smaller model or a larger board"
    )


def load_build_config(path: str | os.PathLike[str]) -> Any:
    """Read a build-configuration file (``qnet fit``'s output) as build options.

    Returns
    -------
    qnet.hw.options.BuildOptions
        Fields absent from the file take BuildOptions' defaults.

    Raises
    ------
    ConfigError
        The file is missing, not JSON, of another format, or holds a bad field (the message
        names the file and the field).
    """
    from qnet.errors import QnetError
    from qnet.hw.options import BuildOptions

    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--config {p}: not a JSON build configuration ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != CONFIG_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(
            f"--config {p}: field 'format' is {found!r}, expected {CONFIG_FORMAT!r} "
            "(a file written by 'qnet fit')"
        )
    fields = {k: v for k, v in data.items() if k not in ("format", "fit")}
    try:
        return BuildOptions.from_dict(fields)
    except QnetError as exc:
        raise type(exc)(f"--config {p}: {exc}") from None
