"""Multi-objective search over per-layer bit widths: accuracy vs estimated LUTs (or latency).

:func:`run_search` runs an Optuna study with two objectives, test accuracy (maximised) and the
estimator's LUT count or latency (minimised), over the weight bits of every weighted layer
and the activation bits of every QuantReLU of a zoo ConvNet or MLP (optionally a width scale
of its channels and hidden layers too). Optuna's multi-objective TPE sampler proposes each
trial; the trial trains as a task of an executor (:mod:`qnet.executors`: this process by
default, or Ray workers), its files come back into ``OUT/trials/trial-NNNN/`` (a normal
checkpoint every other command accepts), the driver lowers and estimates it and tells the
study.

Outputs in ``OUT``: ``study.db`` (the Optuna study in SQLite; running the same command again
continues it up to ``trials`` finished trials: a trial interrupted mid-way is run again with
the same parameters), ``trials.csv`` (one row per finished or failed trial: per-layer bits,
accuracy, LUT, latency, ``pareto`` true/false, checkpoint, error) and ``pareto.png``
(accuracy vs cost, the Pareto front drawn). A trial whose training raises is recorded as
failed with its error and the search goes on.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qnet.errors import ConfigError, ToolNotFoundError
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

__all__ = ["SearchResult", "run_search", "OBJECTIVES", "WIDTH_SCALES", "plot_search"]

OBJECTIVES = ("lut", "latency")
#: Width scales tried with ``search_width``: channels and hidden sizes are multiplied by these.
WIDTH_SCALES = (0.5, 1.0, 2.0)
_STUDY = "qnet-search"
_MANIFEST = "search.json"
_KINDS = ("convnet2d", "convnet1d", "mlp")


@dataclass(frozen=True)
class SearchResult:
    """Where the search wrote its outputs, and its rows (trial order)."""

    out_dir: Path
    csv_path: Path
    plot_path: Path
    db_path: Path
    rows: tuple[dict[str, Any], ...]

    @property
    def pareto(self) -> list[dict[str, Any]]:
        """The rows on the Pareto front."""
        return [r for r in self.rows if r["pareto"]]


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ToolNotFoundError(
            "qnet search needs Optuna: pip install -c constraints.txt -e '.[distributed]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _suggest(trial: Any, n_w: int, n_a: int, bits: Sequence[int], width: bool) -> dict[str, Any]:
    params = {f"w{i}": trial.suggest_categorical(f"w{i}", list(bits)) for i in range(n_w)}
    params |= {f"a{i}": trial.suggest_categorical(f"a{i}", list(bits)) for i in range(n_a)}
    if width:
        params["width"] = trial.suggest_categorical("width", list(WIDTH_SCALES))
    return params


def _overrides(params: dict[str, Any], base: Any, n_w: int, n_a: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "layer_w_bits": tuple(int(params[f"w{i}"]) for i in range(n_w)),
        "layer_a_bits": tuple(int(params[f"a{i}"]) for i in range(n_a)),
    }
    scale = params.get("width")
    if scale is not None:
        out["hidden"] = tuple(max(1, round(h * scale)) for h in base.hidden)
        if base.kind != "mlp":
            out["channels"] = tuple(max(1, round(c * scale)) for c in base.channels)
    return out


def plot_search(rows: Sequence[dict[str, Any]], path: Path, cost: str, title: str) -> Path:
    """Accuracy vs cost of every finished trial, the Pareto front drawn and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["state"] == "complete"]
    key, label = ("lut", "LUTs (estimate)") if cost == "lut" else ("latency_us", "latency, us")
    fig, ax = plt.subplots(figsize=(7.5, 5))
    others = [r for r in done if not r["pareto"]]
    front = sorted((r for r in done if r["pareto"]), key=lambda r: (r[key], -r["accuracy"]))
    ax.scatter(
        [r[key] for r in others],
        [100 * r["accuracy"] for r in others],
        c="tab:blue",
        label="trial",
        zorder=3,
    )
    ax.scatter(
        [r[key] for r in front],
        [100 * r["accuracy"] for r in front],
        c="tab:red",
        label="Pareto front",
        zorder=4,
    )
    ax.step(
        [r[key] for r in front],
        [100 * r["accuracy"] for r in front],
        where="post",
        color="tab:red",
        alpha=0.6,
        zorder=2,
    )
    for r in done:
        ax.annotate(
            f"#{r['trial']} w{r['w_bits']} a{r['a_bits']}",
            (r[key], 100 * r["accuracy"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    costs = [r[key] for r in done if r[key] > 0]
    if costs and max(costs) / min(costs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("test accuracy, %")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
    return path


def run_search(
    model: str,
    data: str,
    board: str,
    out_dir: str | os.PathLike[str],
    *,
    trials: int = 20,
    objective: str = "lut",
    bits: Sequence[int] = (2, 3, 4, 6, 8),
    search_width: bool = False,
    epochs: int | None = None,
    seed: int = 0,
    num_threads: int = 1,
    io_type: str = DEFAULT_IO_TYPE,
    reuse_factor: int = DEFAULT_REUSE_FACTOR,
    strategy: str = DEFAULT_STRATEGY,
    force: bool = False,
    executor: Executor | None = None,
    progress: Callable[[ProgressBoard], None] | None = None,
) -> SearchResult:
    """Search per-layer weight/activation bits for accuracy vs estimated cost.

    Parameters
    ----------
    model : {"convnet2d", "convnet1d", "mlp"}
        Zoo model kind (default architecture for ``data``, see
        :func:`qnet.train.default_model_config`).
    data : str
        Dataset spec (``digits``, an ``.npz`` path present on every worker).
    board : str
        Board for the estimate.
    out_dir : path
        Output folder; running again with the same settings continues the study.
    trials : int
        Finished trials (complete or failed) the study should hold at the end.
    objective : {"lut", "latency"}
        Second objective: estimated LUTs or latency (us), minimised.
    bits : sequence of int
        Bit widths each layer may take (2..8).
    search_width : bool
        Also search a width scale (:data:`WIDTH_SCALES`) of channels and hidden layers.
    epochs, seed, num_threads
        Training of every trial (same seed for all trials).
    io_type, reuse_factor, strategy
        Estimator options.
    force : bool
        Start over in a non-empty folder (deletes the old study).
    executor : Executor, optional
        Where trials train; default this process. ``executor.workers`` trials run at once.
    progress : callable, optional
        Called with the :class:`~qnet.executors.ProgressBoard` as trials start and end.

    Returns
    -------
    SearchResult
    """
    import shutil

    from qnet.data import load_dataset
    from qnet.evaluation import lower_checkpoint
    from qnet.hw.boards import load_board
    from qnet.hw.estimator import estimate
    from qnet.train import default_model_config

    optuna = _import_optuna()
    if model not in _KINDS:
        raise ConfigError(
            f"qnet search supports {', '.join(_KINDS)} (per-layer bits), not {model!r}"
        )
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective {objective!r} is not known; use {' or '.join(OBJECTIVES)}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"--trials must be a positive integer, got {trials!r}")
    bits = sorted(set(bits))
    if not bits or any(not 2 <= b <= 8 for b in bits):
        raise ConfigError(f"--bits must be widths in 2..8, got {bits!r}")
    board_obj = load_board(board)
    out = Path(out_dir)
    settings = {
        "model": model,
        "data": data,
        "epochs": epochs,
        "seed": seed,
        "num_threads": num_threads,
        "objective": objective,
        "bits": bits,
        "search_width": search_width,
        "board": board_obj.name,
        "io_type": io_type,
        "reuse_factor": reuse_factor,
        "strategy": strategy,
    }
    old = check_output_folder(out, _MANIFEST, "search", force)
    if old is not None:
        changed = sorted(k for k in settings if old.get(k) != settings[k])
        if changed:
            raise ConfigError(
                f"--out {out} holds a search with other settings ({', '.join(changed)}: "
                f"{ {k: old.get(k) for k in changed} }); use another folder or --force"
            )
    elif force and out.is_dir():
        shutil.rmtree(out)  # the old study goes with it
    (out / "trials").mkdir(parents=True, exist_ok=True)
    write_manifest(out, _MANIFEST, settings)

    dataset = load_dataset(data, model, seed)
    base = default_model_config(model, dataset)
    n_w, n_a = base.n_weighted, base.n_activations
    db_path = out / "study.db"
    storage = f"sqlite:///{db_path.absolute()}"
    try:  # a resumed study must not replay the sampler's random stream from its start
        earlier = len(optuna.load_study(study_name=_STUDY, storage=storage).trials)
    except KeyError:
        earlier = 0
    study = optuna.create_study(
        study_name=_STUDY,
        storage=storage,
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.TPESampler(seed=seed + 7919 * earlier, n_startup_trials=6),
        load_if_exists=True,
    )
    TrialState = optuna.trial.TrialState
    # trials left RUNNING by an interrupted run: close them and queue their parameters again
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)
        study.enqueue_trial(stale.params, user_attrs={"retry_of": stale.number})

    def finished() -> list[Any]:
        return [
            t
            for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE
            or (t.state == TrialState.FAIL and "error" in t.user_attrs)
        ]

    board_state = ProgressBoard(total=trials)
    for t in finished():
        if t.state == TrialState.COMPLETE:
            board_state.record(f"#{t.number}", t.values[0], f"acc {t.values[0]:.3f}", cached=True)
        else:
            board_state.fail(f"#{t.number}", t.user_attrs["error"])
            board_state.cached += 1
            board_state.failed -= 1

    runner = LocalExecutor() if executor is None else executor
    own = executor is None
    live: dict[str, Any] = {}  # task key -> optuna trial

    def submit() -> None:
        trial = study.ask()
        params = _suggest(trial, n_w, n_a, bits, search_width)
        key = f"trial-{trial.number:04d}"
        live[key] = trial
        runner.submit(
            Task(
                key,
                train_point_task,
                {
                    "model": model,
                    "data": data,
                    "w_bits": max(bits),
                    "a_bits": max(bits),
                    "epochs": epochs,
                    "seed": seed,
                    "num_threads": num_threads,
                    "model_overrides": _overrides(params, base, n_w, n_a),
                },
            )
        )

    def report() -> None:
        board_state.running = runner.running()
        if progress is not None:
            progress(board_state)

    try:
        while len(finished()) + runner.pending < trials and runner.pending < runner.workers:
            submit()
        report()
        while runner.pending:
            res = runner.wait_one()
            trial = live.pop(res.key)
            tdir = out / "trials" / res.key
            if res.ok and res.value is not None:
                store_result(tdir, res.value["files"])
                ckpt = tdir / res.value["checkpoint"]
                est = estimate(
                    lower_checkpoint(ckpt),
                    board_obj,
                    io_type=io_type,
                    reuse_factor=reuse_factor,
                    strategy=strategy,
                )
                acc = float(res.value["test_accuracy"])
                attrs = {
                    "checkpoint": f"trials/{res.key}/{res.value['checkpoint']}",
                    "lut": est.lut,
                    "ff": est.ff,
                    "dsp": est.dsp,
                    "bram_18k": est.bram_18k,
                    "latency_us": est.latency_us,
                    "fits": est.fits,
                    "seconds": res.seconds,
                }
                for k, v in attrs.items():
                    trial.set_user_attr(k, v)
                cost = float(est.lut if objective == "lut" else est.latency_us)
                study.tell(trial, [acc, cost])
                board_state.record(
                    f"#{trial.number}", acc, f"acc {acc:.3f}, {objective} {cost:,.4g}"
                )
            else:
                error = res.error or "unknown error"
                store_error(tdir, error)
                trial.set_user_attr("error", error.splitlines()[0])
                study.tell(trial, state=TrialState.FAIL)
                board_state.fail(f"#{trial.number}", error)
            while len(finished()) + runner.pending < trials and runner.pending < runner.workers:
                submit()
            report()
    finally:
        # an interrupted run leaves its live trials RUNNING in study.db; the next run
        # re-queues their parameters (above)
        if own:
            runner.close()

    return _write_outputs(study, out, db_path, n_w, n_a, objective, model, data, board_obj.name)


def _write_outputs(
    study: Any,
    out: Path,
    db_path: Path,
    n_w: int,
    n_a: int,
    objective: str,
    model: str,
    data: str,
    board: str,
) -> SearchResult:
    import csv

    optuna = _import_optuna()
    TrialState = optuna.trial.TrialState
    front = (
        {t.number for t in study.best_trials}
        if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        else set()
    )
    rows: list[dict[str, Any]] = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.FAIL) or (
            t.state == TrialState.FAIL and "error" not in t.user_attrs
        ):
            continue
        complete = t.state == TrialState.COMPLETE
        w = [t.params.get(f"w{i}") for i in range(n_w)]
        a = [t.params.get(f"a{i}") for i in range(n_a)]
        row: dict[str, Any] = {
            "trial": t.number,
            "state": "complete" if complete else "failed",
            **{f"w{i}": w[i] for i in range(n_w)},
            **{f"a{i}": a[i] for i in range(n_a)},
            "w_bits": "-".join(map(str, w)),
            "a_bits": "-".join(map(str, a)),
            "width": t.params.get("width", 1.0),
            "accuracy": t.values[0] if complete else "",
            "lut": t.user_attrs.get("lut", ""),
            "ff": t.user_attrs.get("ff", ""),
            "dsp": t.user_attrs.get("dsp", ""),
            "bram_18k": t.user_attrs.get("bram_18k", ""),
            "latency_us": t.user_attrs.get("latency_us", ""),
            "fits": t.user_attrs.get("fits", ""),
            "pareto": t.number in front,
            "checkpoint": t.user_attrs.get("checkpoint", ""),
            "error": t.user_attrs.get("error", ""),
        }
        rows.append(row)
    columns = list(rows[0]) if rows else ["trial", "state"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: str(v).lower() if isinstance(v, bool) else v for k, v in row.items()})
    csv_path = atomic_write(out / "trials.csv", buf.getvalue())
    plot_path = out / "pareto.png"
    if any(r["state"] == "complete" for r in rows):
        plot_search(
            rows,
            plot_path,
            objective,
            f"{model} on {data}, {board}: accuracy vs estimated "
            f"{'LUTs' if objective == 'lut' else 'latency'} ({len(rows)} trials; "
            "labels: per-layer weight / activation bits)",
        )
    return SearchResult(out, csv_path, plot_path, db_path, tuple(rows))
