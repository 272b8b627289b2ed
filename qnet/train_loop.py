"""The epoch loop shared by a quantised run and its float baseline: seeded model, optimiser,
learning-rate schedule, augmentation, evaluation and the best-on-validation bookkeeping.

:mod:`qnet.train` drives it (checkpoints, resume, metrics); this module writes no files.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from qnet.checkpoint import restore_stats_state
from qnet.data import Dataset
from qnet.models.config import ModelConfig
from qnet.train_recipe import TrainConfig

__all__ = ["EpochLoop", "evaluate", "build_seeded", "cpu_state", "cpu_tree"]


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


def build_seeded(config: ModelConfig, cfg: TrainConfig, dataset: Dataset) -> Any:
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


def cpu_state(model: Any) -> dict[str, Any]:
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


class EpochLoop:
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
                "state": cpu_state(model),
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


def cpu_tree(value: Any) -> Any:
    """An optimizer state dict with every tensor on the CPU (checkpoints load anywhere)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: cpu_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [cpu_tree(v) for v in value]
    return value
