"""Precision sweeps: train a grid of (weight bits, activation bits), estimate each on a board.

:func:`run_sweep` trains every grid point with :func:`qnet.train.train` into
``OUT/points/w{W}a{A}/``, lowers the checkpoint and runs :func:`qnet.hw.estimator.estimate`,
records the point in ``point.json`` (atomically) and finally writes ``sweep.csv`` and
``pareto.png`` (accuracy vs LUTs and vs latency, Pareto fronts drawn). A point whose
``point.json`` exists is not retrained, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from qnet.errors import ConfigError, OutputExistsError
from qnet.hw.atomic import atomic_write

__all__ = ["SweepPoint", "SweepResult", "run_sweep", "pareto_front", "plot_sweep", "parse_bits"]

_MANIFEST = "sweep.json"


@dataclass(frozen=True)
class SweepPoint:
    """One trained and estimated grid point."""

    w_bits: int
    a_bits: int
    test_accuracy: float
    lut: int
    ff: int
    dsp: int
    bram_18k: int
    latency_cycles: int
    ii_cycles: int
    latency_us: float
    throughput_per_s: float
    fits: bool
    checkpoint: str


@dataclass(frozen=True)
class SweepResult:
    """Where a sweep wrote its table and plot, and its points (grid order)."""

    out_dir: Path
    csv_path: Path
    plot_path: Path
    points: tuple[SweepPoint, ...]


def parse_bits(text: str, what: str) -> list[int]:
    """``"2,4,8"`` -> ``[2, 4, 8]`` (each 1..16, no duplicates)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(not 1 <= v <= 16 for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"{what} must be distinct integers in 1..16, got {text!r}")
    return values


def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (lower-or-equal cost and higher accuracy),
    sorted by cost."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -accuracies[i]))
    front, best = [], -float("inf")
    for i in order:
        if accuracies[i] > best:
            front.append(i)
            best = accuracies[i]
    return front


def plot_sweep(points: Sequence[SweepPoint], path: Path, title: str) -> Path:
    """Accuracy vs LUTs and vs latency, each with its Pareto front, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    acc = [p.test_accuracy * 100 for p in points]
    for ax, costs, label in (
        (axes[0], [p.lut for p in points], "LUTs (estimate)"),
        (axes[1], [p.latency_us for p in points], "latency, us (estimate)"),
    ):
        colours = ["tab:blue" if p.fits else "tab:red" for p in points]
        ax.scatter(costs, acc, c=colours, zorder=3)
        for p, x, y in zip(points, costs, acc, strict=True):
            ax.annotate(
                f"w{p.w_bits}a{p.a_bits}",
                (x, y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        front = pareto_front(costs, acc)
        ax.step(
            [costs[i] for i in front],
            [acc[i] for i in front],
            where="post",
            color="tab:green",
            label="Pareto front",
            zorder=2,
        )
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy, %")
        if min(costs) > 0 and max(costs) / min(costs) > 20:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title + "  (red: does not fit the board)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
    return path


def run_sweep(
    model: str,
    data: str,
    w_bits: Sequence[int],
    a_bits: Sequence[int],
    board: str,
    out_dir: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    io_type: str = "io_parallel",
    reuse_factor: int = 1,
    strategy: str = "Latency",
    seed: int = 0,
    force: bool = False,
    quiet: bool = False,
    on_point: Callable[[int, int, str], None] | None = None,
) -> SweepResult:
    """Train and estimate every (w_bits, a_bits) point; write ``sweep.csv`` and ``pareto.png``.

    Parameters
    ----------
    model, data : str
        Zoo model kind (``convnet2d``, ``mlp``, ...) and dataset spec (``digits``, ...).
    w_bits, a_bits : sequence of int
        The grid.
    board : str
        Board name or board TOML path for the estimate.
    out_dir : path
        Output folder. Re-running with the same settings resumes; a folder holding something
        else is refused unless ``force``.
    epochs : int, optional
        Training epochs per point (default: :class:`qnet.train.TrainConfig`'s).
    io_type, reuse_factor, strategy : estimator options.
    seed : int
        Data split and training seed.
    force : bool
        Start over in a non-empty folder (retrains every point).
    quiet : bool
        No training progress output.
    on_point : callable, optional
        Called as ``on_point(index, total, status)`` after each point (status ``trained``
        or ``cached``), e.g. to advance a progress bar.
    """
    from qnet.data import load_dataset
    from qnet.evaluation import lower_checkpoint
    from qnet.hw.boards import load_board
    from qnet.hw.estimator import estimate
    from qnet.train import TrainConfig, default_model_config, train

    board_obj = load_board(board)
    out = Path(out_dir)
    settings = {
        "model": model,
        "data": data,
        "epochs": epochs,
        "seed": seed,
        "board": board_obj.name,
        "io_type": io_type,
        "reuse_factor": reuse_factor,
        "strategy": strategy,
    }
    manifest = out / _MANIFEST
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        if not manifest.is_file():
            raise OutputExistsError(f"--out {out} is not empty and holds no sweep; use --force")
        old = json.loads(manifest.read_text())
        train_keys = ("model", "data", "epochs", "seed")
        if any(old.get(k) != settings[k] for k in train_keys):
            raise ConfigError(
                f"--out {out} holds a sweep with other training settings "
                f"({ {k: old.get(k) for k in train_keys} }); use another folder or --force"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "points").mkdir(exist_ok=True)
    _atomic_text(manifest, json.dumps(settings, indent=2))

    dataset = load_dataset(data, model, seed)
    tcfg = TrainConfig(seed=seed) if epochs is None else TrainConfig(epochs=epochs, seed=seed)
    grid = [(w, a) for w in w_bits for a in a_bits]
    points: list[SweepPoint] = []
    for index, (w, a) in enumerate(grid):
        pdir = out / "points" / f"w{w}a{a}"
        pjson = pdir / "point.json"
        status = "cached"
        if pjson.is_file() and not force:
            trained = json.loads(pjson.read_text())
        else:
            status = "trained"
            mcfg = default_model_config(model, dataset, w_bits=w, a_bits=a)
            result = train(mcfg, tcfg, dataset, pdir, resume=not force, force=force, quiet=quiet)
            trained = {
                "test_accuracy": float(result.metrics["test_accuracy"]),
                "checkpoint": str(result.checkpoint_path),
            }
        # the estimate is cheap: recompute it (the board or options may differ from last run)
        graph = lower_checkpoint(trained["checkpoint"])
        est = estimate(
            graph, board_obj, io_type=io_type, reuse_factor=reuse_factor, strategy=strategy
        )
        point = SweepPoint(
            w_bits=w,
            a_bits=a,
            test_accuracy=trained["test_accuracy"],
            lut=est.lut,
            ff=est.ff,
            dsp=est.dsp,
            bram_18k=est.bram_18k,
            latency_cycles=est.latency_cycles,
            ii_cycles=est.ii_cycles,
            latency_us=est.latency_us,
            throughput_per_s=est.throughput_per_s,
            fits=est.fits,
            checkpoint=trained["checkpoint"],
        )
        _atomic_text(pjson, json.dumps(asdict(point), indent=2))
        points.append(point)
        if on_point is not None:
            on_point(index + 1, len(grid), status)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(SweepPoint)])
    writer.writeheader()
    for p in points:
        writer.writerow(asdict(p))
    csv_path = out / "sweep.csv"
    _atomic_text(csv_path, buf.getvalue())
    plot_path = plot_sweep(
        points,
        out / "pareto.png",
        f"{model} on {data}, {board_obj.name} ({io_type}, R={reuse_factor})",
    )
    return SweepResult(out, csv_path, plot_path, tuple(points))
