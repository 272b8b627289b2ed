"""Quantisation-aware training of zoo models: deterministic, resumable, with progress.

``train(model_config, train_config, dataset, out_dir)`` writes ``out_dir/model.ckpt`` (after
every epoch, atomically), ``metrics.json`` and ``training.png``. The same seed gives bit-identical
weights on CPU: seeded torch RNG and a dedicated generator for shuffling and augmentation,
deterministic algorithms and a fixed number of threads.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
_OPTIMIZERS = ("adam", "sgd")
_SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Parameters
    ----------
    optimizer : {'adam', 'sgd'}
    lr : float
        Initial learning rate.
    momentum : float
        SGD momentum (ignored by Adam).
    epochs : int
    batch_size : int
    schedule : {'cosine', 'step'}
        Cosine decay to 0 over the run, or x0.1 at 50 % and 75 % of the epochs.
    weight_decay : float
        L2 on conv/linear weights only (not biases, BatchNorm or quantiser scales).
    augment : bool or None
        Random +/-1 pixel shifts and small noise; None = on for digits images (convnet2d).
    shift_prob : float
        Fraction of the augmented samples that are shifted (by -1, 0 or +1 pixel in each
        direction); the others keep their position. 8x8 digits fill their frame, so shifting
        every sample cuts strokes off too often (measured: 8-bit ConvNet2d 97.2 % at 1.0,
        99.4 % at 0.5).
    noise_std : float
        Standard deviation of the Gaussian noise added to augmented images (then clipped to
        [0, 1]).
    label_smoothing : float
        Cross-entropy label smoothing in [0, 1).
    seed : int
    early_stopping : int
        Stop after this many epochs without a better validation accuracy (0: never; needs a
        validation split).
    """

    optimizer: str = "adam"
    lr: float = 0.01
    momentum: float = 0.9
    epochs: int = 30
    batch_size: int = 64
    schedule: str = "cosine"
    weight_decay: float = 1e-4
    augment: bool | None = None
    shift_prob: float = 0.5
    noise_std: float = 0.03
    label_smoothing: float = 0.0
    seed: int = 0
    early_stopping: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(
                f"optimizer {self.optimizer!r} unknown; choose {' or '.join(_OPTIMIZERS)}"
            )
        if self.schedule not in _SCHEDULES:
            raise ConfigError(
                f"schedule {self.schedule!r} unknown; choose {' or '.join(_SCHEDULES)}"
            )
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ConfigError(f"batch-size must be a positive integer, got {self.batch_size!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight-decay must be >= 0, got {self.weight_decay!r}")
        for name in ("shift_prob", "noise_std"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {value!r}")
        if self.shift_prob > 1:
            raise ConfigError(f"shift-prob must be in [0, 1], got {self.shift_prob!r}")
        if not (
            isinstance(self.label_smoothing, int | float) and 0.0 <= self.label_smoothing < 1.0
        ):
            raise ConfigError(f"label-smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        stop = self.early_stopping
        if isinstance(stop, bool) or not isinstance(stop, int) or stop < 0:
            raise ConfigError(
                f"early-stopping must be a non-negative number of epochs, got {stop!r}"
            )


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced."""

    checkpoint_path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def default_model_config(
    kind: str,
    dataset: Dataset,
    *,
    w_bits: int = 4,
    a_bits: int = 4,
    in_bits: int = 8,
    **overrides: Any,
) -> ModelConfig:
    """The zoo's default architecture of ``kind`` for ``dataset``.

    The input preprocessing follows the data set: standardised data (``.npz`` by default) make
    a model that standardises inside its forward, with a signed input quantiser covering the
    data set's power-of-two ``input_range``; digits keep the unsigned [0, 1) quantiser.

    Defaults per kind and bit width (any field can be overridden):

    - convnets: channels (16, 32), hidden (64,); with 2-bit weights or activations channels
      (32, 64), hidden (128,) (measured on digits, 30 epochs: 2-bit (16, 32)/64 reaches ~92 %,
      (32, 64)/128 ~98 %; accumulators stay far below 2**24 lsb);
    - lstm: hidden 32, dropout 0.2 before the classifier (measured on digits-rows, seeds 0-2:
      without dropout 94.4 % at seed 0, with it 96.1-97.8 %; hidden 48 gains only ~0.3 %);
    - mlp: hidden (64,).
    """
    values: dict[str, Any] = {
        "kind": kind,
        "in_shape": dataset.in_shape,
        "num_classes": dataset.num_classes,
        "w_bits": w_bits,
        "a_bits": a_bits,
        "in_bits": in_bits,
        "standardize": dataset.input_norm == "standardize",
        "in_signed": bool(dataset.input_signed),
        "in_range": float(dataset.input_range),
    }
    if kind in ("convnet2d", "convnet1d") and min(w_bits, a_bits) <= 2:
        values["channels"] = (32, 64)
        values["hidden"] = (128,)
    if kind == "lstm":
        values["hidden"] = (32,)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig(**values)


#: Which architecture options apply to which model kind.
ARCHITECTURE_OPTIONS: dict[str, tuple[str, ...]] = {
    "convnet2d": ("channels", "kernel_size", "hidden", "batchnorm", "dropout"),
    "convnet1d": ("channels", "kernel_size", "hidden", "batchnorm", "dropout"),
    "lstm": ("hidden", "dropout"),
    "mlp": ("hidden", "dropout"),
    "user": (),
}


def parse_sizes(text: str | None, option: str) -> tuple[int, ...] | None:
    """``"16,32"`` -> ``(16, 32)`` (None stays None); :class:`ConfigError` naming ``option``."""
    if text is None:
        return None
    try:
        sizes = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(v < 1 for v in sizes):
        raise ConfigError(
            f"{option} {text!r}: give positive integers separated by commas (e.g. 16,32)"
        )
    return sizes


def architecture_overrides(kind: str, **options: Any) -> dict[str, Any]:
    """Check architecture options (None = not given) against ``kind`` and return those given.

    Raises :class:`ConfigError` for an option that does not apply to ``kind`` (e.g.
    ``--channels`` for an lstm, any of them for a user's own model) or an LSTM with more than
    one hidden size.
    """
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    allowed = ARCHITECTURE_OPTIONS.get(kind, ())
    wrong = [k for k in given if k not in allowed]
    if wrong:
        names = ", ".join("--" + k.replace("_", "-") for k in wrong)
        what = (
            "a user's own model defines its own architecture"
            if kind == "user"
            else f"{kind} takes only {', '.join('--' + a.replace('_', '-') for a in allowed)}"
        )
        raise ConfigError(f"{names} does not apply to --model {kind}: {what}")
    if kind == "lstm" and "hidden" in given and len(given["hidden"]) != 1:
        raise ConfigError(
            f"--hidden {','.join(map(str, given['hidden']))}: lstm takes one hidden size "
            "(one QuantLSTM layer), e.g. --hidden 64"
        )
    return given


def prepare(
    model: str,
    data: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    input_norm: str = "auto",
    w_bits: int = 4,
    a_bits: int = 4,
    in_bits: int = 8,
    **architecture: Any,
) -> tuple[ModelConfig, Dataset]:
    """The model config and data set of a ``qnet train`` run.

    ``model`` is a zoo kind or a user's ``file.py:function`` (its data are laid out as its
    example input and kept as they are unless ``input_norm`` says otherwise). ``architecture``
    holds ``channels``, ``kernel_size``, ``hidden``, ``batchnorm``, ``dropout`` (None = the
    default), checked by :func:`architecture_overrides`.
    """
    from qnet.data import load_dataset
    from qnet.sources import is_user_model_spec

    if is_user_model_spec(model):
        architecture_overrides("user", **architecture)
        from qnet.models.user import user_model_config

        config, in_shape = user_model_config(model, 2)
        dataset = load_dataset(
            data,
            "user",
            seed=seed,
            val_fraction=val_fraction,
            input_norm=input_norm,
            in_shape=in_shape,
        )
        from dataclasses import replace

        config = replace(
            config,
            num_classes=dataset.num_classes,
            standardize=dataset.input_norm == "standardize",
        )
        from qnet.models.user import build_user_model

        build_user_model(config)  # checks the logits' shape against the data's classes
        return config, dataset
    # Validate the cheap options first, so a typo does not wait for the data.
    ModelConfig(
        kind=model, in_shape=(1,), num_classes=2, w_bits=w_bits, a_bits=a_bits, in_bits=in_bits
    )
    overrides = architecture_overrides(model, **architecture)
    dataset = load_dataset(data, model, seed=seed, val_fraction=val_fraction, input_norm=input_norm)
    config = default_model_config(
        model, dataset, w_bits=w_bits, a_bits=a_bits, in_bits=in_bits, **overrides
    )
    return config, dataset


def resolve_device(device: str = "auto") -> Any:
    """``auto`` (a GPU when torch sees one, else the CPU), ``cpu`` or ``cuda[:N]`` ->
    :class:`torch.device`; :class:`ConfigError` for anything else or a missing GPU."""
    import torch

    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device}: torch sees no CUDA GPU on this machine; use --device cpu "
                "or auto"
            )
        return torch.device(text)
    raise ConfigError(f"--device {device!r} unknown; choose auto, cpu or cuda (cuda:N)")


def _model_device(model: Any) -> Any:
    import torch

    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def evaluate(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """Accuracy (a fraction) of ``model`` in eval mode on arrays ``x``, ``y`` (on the model's
    device)."""
    import torch

    was_training = model.training
    model.eval()
    device = _model_device(model)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            logits = _logits(model(xb.to(device)))
            correct += int((logits.argmax(1).cpu().numpy() == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


def _logits(out: Any) -> Any:
    """A model's output as a plain tensor (a user's model may return a QuantTensor)."""
    value = getattr(out, "value", None)
    return out if value is None else value


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
            model = _build(model_config, train_config, dataset)
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


def _build(config: ModelConfig, cfg: TrainConfig, dataset: Dataset) -> Any:
    """Seeded fresh model with the data set's standardisation statistics in its buffers."""
    import torch

    from qnet.models import build_model

    torch.manual_seed(cfg.seed)
    model = build_model(config)
    if config.standardize:
        with torch.no_grad():
            model.mean.copy_(torch.from_numpy(np.asarray(dataset.mean, dtype=np.float32)))
            model.std.copy_(torch.from_numpy(np.asarray(dataset.std, dtype=np.float32)))
    return model


def _lr_at(cfg: TrainConfig, epoch: int) -> float:
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr * (0.1 ** (int(epoch >= cfg.epochs * 0.5) + int(epoch >= cfg.epochs * 0.75)))


def _make_optimizer(model: Any, cfg: TrainConfig) -> Any:
    import torch

    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # Only conv/linear weights decay; biases, BatchNorm and quantiser scales must not.
        (decay if param.ndim > 1 and name.endswith("weight") else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def _augment(
    x: Any, generator: Any, hw: tuple[int, int], shift_prob: float, noise_std: float
) -> Any:
    """Random shifts of -1, 0, +1 pixels in each direction (zero fill) plus Gaussian noise.

    A fraction ``shift_prob`` of the samples (drawn per sample) is shifted; every sample gets
    the noise.
    """
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    h, w = hw
    padded = F.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=generator)
    dx = torch.randint(0, 3, (n,), generator=generator)
    still = torch.rand(n, generator=generator) >= shift_prob
    dy[still] = 1
    dx[still] = 1
    rows = dy[:, None] + torch.arange(h)[None, :]  # (n, h)
    cols = dx[:, None] + torch.arange(w)[None, :]  # (n, w)
    batch = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    noise = torch.randn(out.shape, generator=generator) * noise_std
    return (out + noise).clamp_(0.0, 1.0).contiguous()


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


def _cpu_state(model: Any) -> dict[str, Any]:
    """A CPU copy of every weight, including Brevitas' runtime-statistics scales that have not
    collected any statistics yet (Brevitas leaves those out of ``state_dict`` by default, and
    then cannot load its own state: a float baseline never runs its quantisers)."""
    from brevitas import config as brevitas_config

    old = brevitas_config._FULL_STATE_DICT
    brevitas_config._FULL_STATE_DICT = True
    try:
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    finally:
        brevitas_config._FULL_STATE_DICT = old


class _Loop:
    """The epoch loop shared by the quantised run and its float baseline.

    ``history`` gets ``loss``, ``train_accuracy`` (running, on augmented batches), ``lr``,
    ``epoch_seconds`` (forward/backward/step time only) and ``val_accuracy`` (with a validation
    split) or ``test_accuracy`` (without one) per epoch; ``best`` holds the epoch best on
    validation (the last epoch without a validation split) and its weights.
    """

    def __init__(
        self,
        model: Any,
        cfg: TrainConfig,
        dataset: Dataset,
        augment: bool,
        device: Any,
    ) -> None:
        import torch

        self.model = model.to(device)
        self.cfg = cfg
        self.dataset = dataset
        self.augment = augment
        self.device = device
        self.optimizer = _make_optimizer(self.model, cfg)
        self.generator = torch.Generator().manual_seed(cfg.seed + 0x5EED)
        self.has_val = dataset.x_val is not None
        self.history: dict[str, list[float]] = {
            "loss": [],
            "train_accuracy": [],
            "val_accuracy" if self.has_val else "test_accuracy": [],
            "lr": [],
            "epoch_seconds": [],
        }
        self.best: dict[str, Any] = {"epoch": 0, "val_accuracy": None, "state": None, "stats": {}}
        self.epoch = 0
        self.stopped_early = False

    def run_epoch(self) -> None:
        import torch
        import torch.nn.functional as F

        from qnet.checkpoint import stats_state

        cfg, model = self.cfg, self.model
        x_train = torch.from_numpy(self.dataset.x_train)
        y_train = torch.from_numpy(self.dataset.y_train)
        n = len(x_train)
        lr = _lr_at(cfg, self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        model.train()
        perm = torch.randperm(n, generator=self.generator)
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        t0 = time.perf_counter()
        for b in range(math.ceil(n / cfg.batch_size)):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if self.augment:
                xb = _augment(
                    xb,
                    self.generator,
                    self.dataset.image_hw,  # type: ignore[arg-type]
                    cfg.shift_prob,
                    cfg.noise_std,
                )
            xb, yb = xb.to(self.device), yb.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            logits = _logits(model(xb))
            loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
            loss.backward()
            self.optimizer.step()
            total_loss += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == yb).sum()
        self.history["epoch_seconds"].append(time.perf_counter() - t0)
        self.history["loss"].append(float(total_loss) / n)
        self.history["train_accuracy"].append(int(correct) / n)
        self.history["lr"].append(lr)
        self.epoch += 1
        if self.has_val:
            acc = evaluate(model, self.dataset.x_val, self.dataset.y_val)  # type: ignore[arg-type]
            self.history["val_accuracy"].append(acc)
            improved = self.best["val_accuracy"] is None or acc >= self.best["val_accuracy"]
        else:
            self.history["test_accuracy"].append(
                evaluate(model, self.dataset.x_test, self.dataset.y_test)
            )
            acc, improved = None, True
        if improved:
            self.best = {
                "epoch": self.epoch,
                "val_accuracy": acc,
                "state": _cpu_state(model),
                "stats": stats_state(model),
            }
        patience = cfg.early_stopping
        if self.has_val and patience and self.epoch - int(self.best["epoch"]) >= patience:
            self.stopped_early = True

    def restore_best(self) -> None:

        if self.best["state"] is not None:
            self.model.load_state_dict(self.best["state"])
            restore_stats_state(self.model, self.best["stats"])

    def info(self) -> str:
        key = "val_accuracy" if self.has_val else "test_accuracy"
        return (
            f"loss {self.history['loss'][-1]:.3f} acc {self.history['train_accuracy'][-1]:.3f} "
            f"{key.split('_')[0]} {self.history[key][-1]:.3f}"
        )


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

    loop = _Loop(model, cfg, dataset, augment, device)
    seconds_before = 0.0
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
        differ = [k for k in mine if k not in ("epochs",) and saved_cfg.get(k) != mine[k]]
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
            "state": _cpu_state(ckpt.model),
            "stats": dict(ckpt.stats_state),
        }
        seconds_before = float(state["seconds"])

    def resume_state(seconds: float) -> dict[str, Any]:
        """Everything --resume needs to continue bit-identically after the last epoch."""
        return {
            "epoch": loop.epoch,
            "seconds": seconds,
            "train_config": asdict(cfg),
            "optimizer": _cpu_tree(loop.optimizer.state_dict()),
            "torch_rng": torch.get_rng_state(),
            "generator": loop.generator.get_state(),
            "history": loop.history,
            "last_model": _cpu_state(loop.model),
            "stats_state_train": stats_state(loop.model),
            "best_epoch": int(loop.best["epoch"]),
            "best_val_accuracy": loop.best["val_accuracy"],
            "augment": augment,
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
    last_state = _cpu_state(loop.model)
    last_stats = stats_state(loop.model)
    loop.restore_best()
    metrics = _final_metrics(loop, model_config, cfg, dataset, augment, seconds)
    if float_baseline:
        metrics["float_baseline"] = _float_baseline(
            model_config, cfg, dataset, augment, device, quiet
        )
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


def _cpu_tree(value: Any) -> Any:
    """An optimizer state dict with every tensor on the CPU (checkpoints load anywhere)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu_tree(v) for v in value]
    return value


def _final_metrics(
    loop: _Loop,
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


def _float_baseline(
    model_config: ModelConfig,
    cfg: TrainConfig,
    dataset: Dataset,
    augment: bool,
    device: Any,
    quiet: bool,
) -> dict[str, Any]:
    """The same architecture without quantisers, same recipe, seed and model selection."""
    from dataclasses import replace

    float_config = replace(model_config, quantize=False)
    loop = _Loop(_build(float_config, cfg, dataset), cfg, dataset, augment, device)
    progress, task = _progress(quiet, f"{model_config.kind} float baseline", cfg.epochs, 0)
    t0 = time.perf_counter()
    try:
        while loop.epoch < cfg.epochs and not loop.stopped_early:
            loop.run_epoch()
            if progress is not None:
                progress.update(task, advance=1, info=loop.info())
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
    return result


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
