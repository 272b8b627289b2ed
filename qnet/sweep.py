"""Precision sweeps: train a grid of (weight bits, activation bits), estimate each on a board.

:func:`run_sweep` trains every grid point with :func:`qnet.train.train` as a task of an
executor (:mod:`qnet.executors`: this process by default, or Ray workers), writes the files
each task returns into ``OUT/points/w{W}a{A}/``, records the point in ``point.json``
(atomically, last), lowers the checkpoint and runs :func:`qnet.hw.estimator.estimate`, and
finally writes ``sweep.csv`` and ``pareto.png`` (accuracy vs LUTs and vs latency, Pareto
fronts drawn). A point whose ``point.json`` exists is not retrained, so an interrupted sweep
resumes where it stopped; a point whose training raised is recorded (``error.txt``, a
``failed`` row in ``sweep.csv``) and retried by the next run, and does not stop the others.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from qnet.errors import ConfigError
from qnet.executors import Executor, LocalExecutor, ProgressBoard, Task
from qnet.hw.atomic import atomic_write
from qnet.hw.options import DEFAULT_IO_TYPE, DEFAULT_REUSE_FACTOR, DEFAULT_STRATEGY
from qnet.trials import (
    check_output_folder,
    store_error,
    store_result,
    train_point_task,
    write_manifest,
)

__all__ = [
    "SweepPoint",
    "SweepResult",
    "run_sweep",
    "pareto_front",
    "plot_sweep",
    "parse_bits",
]

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
    failed: tuple[tuple[int, int, str], ...] = ()
    statuses: dict[str, str] = field(default_factory=dict)


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


def _csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


def run_sweep(
    model: str,
    data: str,
    w_bits: Sequence[int],
    a_bits: Sequence[int],
    board: str,
    out_dir: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    io_type: str = DEFAULT_IO_TYPE,
    reuse_factor: int = DEFAULT_REUSE_FACTOR,
    strategy: str = DEFAULT_STRATEGY,
    seed: int = 0,
    num_threads: int = 1,
    force: bool = False,
    quiet: bool = False,
    executor: Executor | None = None,
    on_point: Callable[[int, int, str], None] | None = None,
    progress: Callable[[ProgressBoard], None] | None = None,
) -> SweepResult:
    """Train and estimate every (w_bits, a_bits) point; write ``sweep.csv`` and ``pareto.png``.

    Parameters
    ----------
    model, data : str
        Zoo model kind (``convnet2d``, ``mlp``, ...) and dataset spec (``digits``, ...). On a
        multi-machine Ray cluster a data file path must exist on every worker.
    w_bits, a_bits : sequence of int
        The grid.
    board : str
        Board name or board TOML path for the estimate.
    out_dir : path
        Output folder. Re-running with the same settings resumes: points whose ``point.json``
        exists are not trained again; failed points are retried. A folder holding something
        else is refused unless ``force``.
    epochs : int, optional
        Training epochs per point (default: :class:`qnet.train.TrainConfig`'s).
    io_type, reuse_factor, strategy : estimator options.
    seed : int
        Data split and training seed (the same for every point).
    num_threads : int
        Torch threads per training run. A point's weights are bit-identical for a given seed
        and thread count whichever executor runs it.
    force : bool
        Start over in a non-empty folder (retrains every point).
    quiet : bool
        Kept for compatibility: training never prints here (points may run on other machines).
    executor : Executor, optional
        Where points train (:func:`qnet.executors.make_executor`); default: this process.
    on_point : callable, optional
        ``on_point(done, total, status)`` after each point (status ``trained``, ``cached`` or
        ``failed``).
    progress : callable, optional
        Called with the :class:`~qnet.executors.ProgressBoard` whenever a point starts or ends.

    Returns
    -------
    SweepResult
        The points that trained (grid order); failed points are in ``failed`` and in
        ``sweep.csv`` with ``status=failed`` and their error.
    """
    from qnet.evaluation import lower_checkpoint
    from qnet.hw.boards import load_board
    from qnet.hw.estimator import estimate

    board_obj = load_board(board)
    out = Path(out_dir)
    settings = {
        "model": model,
        "data": data,
        "epochs": epochs,
        "seed": seed,
        "num_threads": num_threads,
        "board": board_obj.name,
        "io_type": io_type,
        "reuse_factor": reuse_factor,
        "strategy": strategy,
    }
    old = check_output_folder(out, _MANIFEST, "sweep", force)
    if old is not None:
        train_keys = ("model", "data", "epochs", "seed", "num_threads")
        if any(
            old.get(k, settings[k] if k == "num_threads" else None) != settings[k]
            for k in train_keys
        ):
            raise ConfigError(
                f"--out {out} holds a sweep with other training settings "
                f"({ {k: old.get(k) for k in train_keys} }); use another folder or --force"
            )
    (out / "points").mkdir(parents=True, exist_ok=True)
    write_manifest(out, _MANIFEST, settings)

    grid = [(w, a) for w in w_bits for a in a_bits]
    names = [f"w{w}a{a}" for w, a in grid]
    board_state = ProgressBoard(total=len(grid))
    trained: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    statuses: dict[str, str] = {}
    done_count = 0

    def notify(name: str, status: str) -> None:
        nonlocal done_count
        done_count += 1
        statuses[name] = status
        if on_point is not None:
            on_point(done_count, len(grid), status)
        if progress is not None:
            progress(board_state)

    todo: list[Task] = []
    for (w, a), name in zip(grid, names, strict=True):
        pdir = out / "points" / name
        pjson = pdir / "point.json"
        if force and pdir.exists():
            shutil.rmtree(pdir)
        if pjson.is_file():
            trained[name] = json.loads(pjson.read_text())
            acc = trained[name]["test_accuracy"]
            board_state.record(name, acc, f"test acc {acc:.3f}", cached=True)
            notify(name, "cached")
            continue
        todo.append(
            Task(
                name,
                train_point_task,
                {
                    "model": model,
                    "data": data,
                    "w_bits": w,
                    "a_bits": a,
                    "epochs": epochs,
                    "seed": seed,
                    "num_threads": num_threads,
                },
            )
        )

    own = executor is None
    runner = LocalExecutor() if executor is None else executor
    try:
        for task in todo:
            runner.submit(task)
        board_state.running = runner.running()
        if progress is not None:
            progress(board_state)
        while runner.pending:
            res = runner.wait_one()
            pdir = out / "points" / res.key
            if res.ok and res.value is not None:
                store_result(pdir, res.value["files"])
                record = {
                    "test_accuracy": res.value["test_accuracy"],
                    "checkpoint": f"points/{res.key}/{res.value['checkpoint']}",
                    "seconds": res.seconds,
                }
                trained[res.key] = record
                board_state.record(
                    res.key, record["test_accuracy"], f"test acc {record['test_accuracy']:.3f}"
                )
                status = "trained"
            else:
                errors[res.key] = res.error or "unknown error"
                store_error(pdir, errors[res.key])
                board_state.fail(res.key, errors[res.key])
                status = "failed"
            board_state.running = runner.running()
            if status == "trained":
                # point.json last: its presence means the point is complete
                _atomic_text(
                    out / "points" / res.key / "point.json", json.dumps(trained[res.key], indent=2)
                )
            notify(res.key, status)
    finally:
        if own:
            runner.close()

    # the estimate is cheap: recompute it (the board or options may differ from last run)
    points: list[SweepPoint] = []
    rows: list[dict[str, Any]] = []
    for (w, a), name in zip(grid, names, strict=True):
        if name in errors:
            rows.append(
                {
                    "w_bits": w,
                    "a_bits": a,
                    "status": "failed",
                    "error": errors[name].splitlines()[0],
                }
            )
            continue
        rec = trained[name]
        ckpt = Path(rec["checkpoint"])
        ckpt = ckpt if ckpt.is_absolute() else out / ckpt
        graph = lower_checkpoint(ckpt)
        est = estimate(
            graph, board_obj, io_type=io_type, reuse_factor=reuse_factor, strategy=strategy
        )
        point = SweepPoint(
            w_bits=w,
            a_bits=a,
            test_accuracy=rec["test_accuracy"],
            lut=est.lut,
            ff=est.ff,
            dsp=est.dsp,
            bram_18k=est.bram_18k,
            latency_cycles=est.latency_cycles,
            ii_cycles=est.ii_cycles,
            latency_us=est.latency_us,
            throughput_per_s=est.throughput_per_s,
            fits=est.fits,
            checkpoint=str(rec["checkpoint"]),
        )
        points.append(point)
        rows.append({**asdict(point), "status": "ok", "error": ""})

    columns = [f.name for f in fields(SweepPoint)] + ["status", "error"]
    csv_path = out / "sweep.csv"
    _atomic_text(csv_path, _csv_text(rows, columns))
    plot_path = out / "pareto.png"
    if points:
        plot_sweep(
            points,
            plot_path,
            f"{model} on {data}, {board_obj.name} ({io_type}, R={reuse_factor})",
        )
    return SweepResult(
        out,
        csv_path,
        plot_path,
        tuple(points),
        failed=tuple((*dict(zip(names, grid, strict=True))[k], v) for k, v in errors.items()),
        statuses=dict(statuses),
    )
