"""Quantisation-aware training of zoo models: deterministic, resumable, with progress.

``train(model_config, train_config, dataset, out_dir)`` writes ``out_dir/model.ckpt`` (after
every epoch, atomically), ``metrics.json`` and ``training.png``. The same seed gives bit-identical
weights on CPU: seeded torch RNG and a dedicated generator for shuffling and augmentation,
deterministic algorithms and a fixed number of threads.

This module runs a training job: checks, checkpoints, ``--resume``, metrics, the float
baseline, progress and curves. The recipe (:class:`TrainConfig`, default architectures, CLI
architecture options, :func:`prepare`, :func:`resolve_device`) lives in
:mod:`qnet.train_recipe`, the epoch loop and :func:`evaluate` in :mod:`qnet.train_loop`; their
public names are re-exported here.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qnet.checkpoint import load_checkpoint, restore_stats_state, save_checkpoint
from qnet.data import Dataset
from qnet.errors import (
    CheckpointError,
    ConfigError,
    OutputExistsError,
    TrainingInterrupted,
)
from qnet.hw.atomic import atomic_write
from qnet.models.config import ModelConfig
from qnet.train_loop import EpochLoop, build_seeded, cpu_state, cpu_tree, evaluate
from qnet.train_recipe import (
    ARCHITECTURE_OPTIONS,
    TrainConfig,
    architecture_overrides,
    default_model_config,
    parse_sizes,
    prepare,
    resolve_device,
)

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "train",
    "evaluate",
    "default_model_config",
    "resolve_device",
    "prepare",
    "architecture_overrides",
    "parse_sizes",
    "ARCHITECTURE_OPTIONS",
    "CHECKPOINT_NAME",
    "NUM_THREADS",
]

CHECKPOINT_NAME = "model.ckpt"
#: Threads torch uses while training (fixed, so results do not depend on the machine).
NUM_THREADS = 2


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced."""

    checkpoint_path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    num_threads: int = NUM_THREADS,
    device: str = "auto",
    float_baseline: bool = False,
) -> TrainResult:
    """Train ``model_config`` on ``dataset`` and write checkpoint, metrics and curves.

    With a validation split (``dataset.x_val``) the checkpoint kept is the epoch best on
    validation accuracy (ties: the later epoch) and the test split is evaluated once, at the
    end, on that model; without one, the last epoch is kept (and the curves show the test
    accuracy per epoch).

    Parameters
    ----------
    model_config : ModelConfig
        Its ``in_shape``/``num_classes`` must match ``dataset``. Kind ``user`` trains the
        Brevitas model a user's ``file.py:function`` returns.
    train_config : TrainConfig
    dataset : Dataset
    out_dir : path-like
        Output folder; a non-empty one is refused unless ``force`` or ``resume``.
    resume : bool
        Continue from ``out_dir/model.ckpt`` (same model config; epochs may be raised).
    force : bool
        Overwrite an existing non-empty ``out_dir``.
    quiet : bool
        No progress output.
    num_threads : int
        Torch threads while training. Results are bit-identical for a given seed and thread
        count; on a loaded machine 1 thread is much faster than 2 (spinning threads).
    device : str
        ``auto`` (a GPU when torch sees one), ``cpu`` or ``cuda``. The checkpoint is written
        with CPU tensors either way.
    float_baseline : bool
        Also train the same architecture without quantisers, same recipe and seed (not
        saved as a checkpoint; ``metrics.json`` gains ``float_baseline`` and
        ``quantisation_cost``).

    Returns
    -------
    TrainResult

    Raises
    ------
    OutputExistsError, CheckpointError, ConfigError, TrainingInterrupted
    """
    import torch

    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ConfigError(f"num_threads must be a positive integer, got {num_threads!r}")
    dev = resolve_device(device)
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    if model_config.in_shape != dataset.in_shape:
        raise ConfigError(
            f"model in_shape {model_config.in_shape} does not match data {dataset.name!r} "
            f"samples {dataset.in_shape}"
        )
    if model_config.num_classes != dataset.num_classes:
        raise ConfigError(
            f"model num_classes {model_config.num_classes} != {dataset.num_classes} classes in {dataset.name!r}"
        )
    if model_config.standardize and (dataset.mean is None or dataset.std is None):
        raise ConfigError(
            f"the model standardises its input but data {dataset.name!r} carries no "
            "training statistics (load it with input_norm='standardize')"
        )
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} exists and is not a folder")
    nonempty = out.is_dir() and any(out.iterdir())
    if resume and nonempty and not ckpt_path.exists():
        raise CheckpointError(f"--resume: {out} has no {CHECKPOINT_NAME} to continue from")
    if nonempty and not (force or resume):
        raise OutputExistsError(
            f"--out {out} is not empty; use --force to overwrite or --resume to continue training"
        )

    augment = train_config.augment
    if augment is None:
        augment = dataset.image_hw is not None and dataset.name.startswith("digits")
    if augment and dataset.image_hw is None:
        raise ConfigError("augmentation (pixel shifts) needs image data and a convnet2d model")

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True, warn_only=dev.type != "cpu")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            model = build_seeded(model_config, train_config, dataset)
            out.mkdir(parents=True, exist_ok=True)
            return _train(
                model,
                model_config,
                train_config,
                dataset,
                out,
                ckpt_path,
                bool(augment),
                resume and ckpt_path.exists(),
                quiet,
                dev,
                float_baseline,
            )
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _progress(quiet: bool, description: str, total: int, completed: int) -> tuple[Any, Any]:
    if quiet:
        return None, None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]train[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    progress.start()
    task = progress.add_task(description, total=total, completed=completed, info="")
    return progress, task


def _train(
    model: Any,
    model_config: ModelConfig,
    cfg: TrainConfig,
    dataset: Dataset,
    out: Path,
    ckpt_path: Path,
    augment: bool,
    resume: bool,
    quiet: bool,
    device: Any,
    float_baseline: bool,
) -> TrainResult:
    import torch

    from qnet.checkpoint import stats_state

    loop = EpochLoop(model, cfg, dataset, augment, device)
    seconds_before = 0.0
    float_result: dict[str, Any] | None = None
    if not resume and cfg.warm_starts(model_config.kind):
        float_result, float_state = _float_run(
            model_config, cfg, dataset, augment, device, quiet,
            f"it is the warm start of the quantised model; nothing is saved in {out} yet",
        )  # fmt: skip
        _load_float_weights(loop.model, float_state, model_config)
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        state = ckpt.train_state
        if state is None:
            raise CheckpointError(
                f"{ckpt_path}: holds no training state (a final export?); cannot --resume"
            )
        if ckpt.config != model_config:
            raise CheckpointError(
                f"{ckpt_path}: was trained with a different model config ({ckpt.config}); "
                f"--resume needs the same one ({model_config})"
            )
        saved_cfg = dict(state["train_config"])
        mine = asdict(cfg)
        defaults = asdict(TrainConfig())  # settings added since the checkpoint was written
        differ = [
            k for k in mine if k not in ("epochs",) and saved_cfg.get(k, defaults[k]) != mine[k]
        ]
        if differ:
            raise CheckpointError(
                f"{ckpt_path}: --resume with different training settings {differ}; only --epochs may change"
            )
        # the checkpoint's model is the best epoch; training continues from the last one
        loop.model.load_state_dict(state.get("last_model", ckpt.model.state_dict()))
        restore_stats_state(loop.model, state["stats_state_train"])
        loop.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        loop.generator.set_state(state["generator"])
        loop.history = {k: list(v) for k, v in state["history"].items()}
        loop.epoch = int(state["epoch"])
        best_epoch = int(state.get("best_epoch", loop.epoch))
        loop.best = {
            "epoch": best_epoch,
            "val_accuracy": state.get("best_val_accuracy"),
            "state": cpu_state(ckpt.model),
            "stats": dict(ckpt.stats_state),
        }
        seconds_before = float(state["seconds"])
        float_result = state.get("float_run")

    def resume_state(seconds: float) -> dict[str, Any]:
        """Everything --resume needs to continue bit-identically after the last epoch."""
        return {
            "epoch": loop.epoch,
            "seconds": seconds,
            "train_config": asdict(cfg),
            "optimizer": cpu_tree(loop.optimizer.state_dict()),
            "torch_rng": torch.get_rng_state(),
            "generator": loop.generator.get_state(),
            "history": loop.history,
            "last_model": cpu_state(loop.model),
            "stats_state_train": stats_state(loop.model),
            "best_epoch": int(loop.best["epoch"]),
            "best_val_accuracy": loop.best["val_accuracy"],
            "augment": augment,
            "float_run": float_result,
        }

    def save(metrics: dict[str, Any], seconds: float) -> None:
        save_checkpoint(
            ckpt_path,
            loop.model,
            model_config,
            metrics=metrics,
            data_spec=dataset.name,
            normalisation=dataset.normalisation,
            train_state=resume_state(seconds),
            model_state=loop.best["state"],
            model_stats=loop.best["stats"],
        )

    label = "user model" if model_config.kind == "user" else model_config.kind
    progress, task = _progress(
        quiet, f"{label} w{model_config.w_bits}a{model_config.a_bits}", cfg.epochs, loop.epoch
    )
    t0 = time.perf_counter()
    start_epoch = loop.epoch
    try:
        while loop.epoch < cfg.epochs and not loop.stopped_early:
            loop.run_epoch()
            save(
                {"epochs": loop.epoch, "best_epoch": int(loop.best["epoch"])},
                seconds_before + time.perf_counter() - t0,
            )
            if progress is not None:
                progress.update(task, advance=1, info=loop.info())
    except KeyboardInterrupt:
        if progress is not None:
            progress.stop()
        done = (
            "no complete epoch yet"
            if loop.epoch == start_epoch and start_epoch == 0
            else f"{CHECKPOINT_NAME} holds epoch {loop.epoch} (its model: the best of those "
            "epochs on validation)"
        )
        raise TrainingInterrupted(
            f"training interrupted during epoch {loop.epoch + 1}/{cfg.epochs}; {done} in {out}; "
            "continue with --resume"
        ) from None
    if progress is not None:
        progress.stop()
    seconds = seconds_before + time.perf_counter() - t0
    last_state = cpu_state(loop.model)
    last_stats = stats_state(loop.model)
    loop.restore_best()
    metrics = _final_metrics(loop, model_config, cfg, dataset, augment, seconds)
    if float_result is not None:
        metrics["warm_start"] = "float"
    if float_baseline:
        if float_result is None:
            float_result, _ = _float_run(
                model_config, cfg, dataset, augment, device, quiet,
                f"the quantised model's {CHECKPOINT_NAME} in {out} holds its last epoch but "
                "metrics.json is not written; continue with --resume",
            )  # fmt: skip
        metrics["float_baseline"] = float_result
        metrics["quantisation_cost"] = (
            metrics["float_baseline"]["test_accuracy"] - metrics["test_accuracy"]
        )
    # the resume state continues from the last epoch, the checkpoint's model is the best one
    best_state, best_stats = loop.best["state"], loop.best["stats"]
    loop.model.load_state_dict(last_state)
    restore_stats_state(loop.model, last_stats)
    loop.best["state"], loop.best["stats"] = best_state, best_stats
    save({k: v for k, v in metrics.items() if k != "history"}, seconds)
    atomic_write(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    title = f"{label} w{model_config.w_bits}a{model_config.a_bits} on {dataset.name}"
    _plot(loop.history, out / "training.png", title)
    loop.restore_best()
    loop.model.to("cpu").eval()
    return TrainResult(checkpoint_path=ckpt_path, metrics=metrics)


def _final_metrics(
    loop: EpochLoop,
    model_config: ModelConfig,
    cfg: TrainConfig,
    dataset: Dataset,
    augment: bool,
    seconds: float,
) -> dict[str, Any]:
    from qnet import __version__

    model = loop.model
    epoch_seconds = loop.history.get("epoch_seconds", [])
    metrics: dict[str, Any] = {
        "test_accuracy": evaluate(model, dataset.x_test, dataset.y_test),
        "train_accuracy": evaluate(model, dataset.x_train, dataset.y_train),
        "epochs": loop.epoch,
        "best_epoch": int(loop.best["epoch"]),
        "stopped_early": loop.stopped_early,
        "seconds": round(seconds, 3),
        "seconds_per_epoch": round(sum(epoch_seconds) / max(len(epoch_seconds), 1), 4),
        "final_loss": loop.history["loss"][-1] if loop.history["loss"] else None,
        "data": dataset.name,
        "num_train": int(len(dataset.x_train)),
        "num_val": int(len(dataset.x_val)) if dataset.x_val is not None else 0,
        "num_test": int(len(dataset.x_test)),
        "val_fraction": dataset.val_fraction,
        "input_norm": dataset.input_norm,
        "augment": augment,
        "model_config": {
            k: list(v) if isinstance(v, tuple) else v for k, v in model_config.to_dict().items()
        },
        "train_config": asdict(cfg),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "qnet_version": __version__,
        "history": loop.history,
    }
    if dataset.x_val is not None:
        metrics["val_accuracy"] = evaluate(model, dataset.x_val, dataset.y_val)  # type: ignore[arg-type]
    return metrics


def _float_run(
    model_config: ModelConfig,
    cfg: TrainConfig,
    dataset: Dataset,
    augment: bool,
    device: Any,
    quiet: bool,
    on_interrupt: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same architecture without quantisers, same recipe, seed and model selection: its
    metrics (the float baseline) and its best weights (a warm start). ``on_interrupt`` says,
    after Ctrl-C, what has been saved."""
    from dataclasses import replace

    float_config = replace(model_config, quantize=False)
    loop = EpochLoop(build_seeded(float_config, cfg, dataset), cfg, dataset, augment, device)
    progress, task = _progress(quiet, f"{model_config.kind} float twin", cfg.epochs, 0)
    t0 = time.perf_counter()
    try:
        while loop.epoch < cfg.epochs and not loop.stopped_early:
            loop.run_epoch()
            if progress is not None:
                progress.update(task, advance=1, info=loop.info())
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"training interrupted during epoch {loop.epoch + 1}/{cfg.epochs} of the float "
            f"twin (same architecture without quantisers); {on_interrupt}"
        ) from None
    finally:
        if progress is not None:
            progress.stop()
    seconds = time.perf_counter() - t0
    loop.restore_best()
    epoch_seconds = loop.history["epoch_seconds"]
    result: dict[str, Any] = {
        "test_accuracy": evaluate(loop.model, dataset.x_test, dataset.y_test),
        "train_accuracy": evaluate(loop.model, dataset.x_train, dataset.y_train),
        "best_epoch": int(loop.best["epoch"]),
        "epochs": loop.epoch,
        "seconds": round(seconds, 3),
        "seconds_per_epoch": round(sum(epoch_seconds) / max(len(epoch_seconds), 1), 4),
        "history": loop.history,
    }
    if dataset.x_val is not None:
        result["val_accuracy"] = evaluate(loop.model, dataset.x_val, dataset.y_val)  # type: ignore[arg-type]
    return result, cpu_state(loop.model)


def _load_float_weights(model: Any, state: dict[str, Any], config: ModelConfig) -> None:
    """Copy a float twin's weights into the quantised model (the quantisers keep their
    initialisation; Brevitas maps ``nn.LSTM``'s ``weight_ih_l0``... onto its gates)."""
    from qnet.errors import InternalError

    result = model.load_state_dict(state, strict=False)
    own = set(model.state_dict())
    missing = [k for k in result.missing_keys if "quant" not in k and k in own]
    if result.unexpected_keys or missing:
        raise InternalError(
            f"the float twin of {config.kind} does not map onto it: unexpected "
            f"{result.unexpected_keys}, missing {missing}"
        )


def _plot(history: dict[str, list[float]], path: Path, title: str) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        if history.get(key):
            ax_acc.plot(epochs, history[key], label=key.replace("_", " "))
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
