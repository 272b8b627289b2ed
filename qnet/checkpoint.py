"""One-file checkpoints: model config, weights, quantiser statistics, data normalisation, metrics.

A checkpoint is a ``torch.save`` of a plain dict of strings, numbers, lists, dicts and tensors
only, so it loads with ``torch.load(weights_only=True)``: loading an untrusted file cannot run
code. It is written atomically (temporary file in the same folder + ``os.replace``), so an
interrupted write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qnet.errors import CheckpointError, ConfigError
from qnet.hw.atomic import atomic_file
from qnet.models.config import ModelConfig

__all__ = [
    "Checkpoint",
    "FORMAT",
    "FORMAT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "require_kind",
    "stats_state",
    "restore_stats_state",
]

FORMAT = "qnet-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    path : Path
    config : ModelConfig
    model : torch.nn.Module
        The Brevitas model in eval mode with its weights and quantiser scales loaded.
    metrics : dict
    data_spec : str
        The ``--data`` the model was trained on.
    normalisation : dict
        ``{"scale", "offset"}``: inputs are ``(raw - offset) * scale``.
    qnet_version : str
    train_state : dict or None
        Optimizer and RNG state for ``--resume`` (None in a final export).
    stats_state : dict
        The model's quantiser statistics state (see :func:`stats_state`).
    """

    path: Path
    config: ModelConfig
    model: Any
    metrics: dict[str, Any]
    data_spec: str
    normalisation: dict[str, Any]
    qnet_version: str
    train_state: dict[str, Any] | None = field(default=None)
    stats_state: dict[str, Any] = field(default_factory=dict)


def stats_state(model: Any) -> dict[str, dict[str, Any]]:
    """Statistics-collection state of every runtime-statistics scaling module of ``model``.

    Brevitas does not save these (counter, running buffer) in the state dict; a resumed run
    needs them to continue exactly where it stopped.
    """
    from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling

    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        if isinstance(module, ParameterFromRuntimeStatsScaling):
            out[name] = {"counter": int(module.counter), "buffer": module.buffer.detach().clone()}
    return out


def restore_stats_state(model: Any, state: dict[str, dict[str, Any]]) -> None:
    """Inverse of :func:`stats_state` (call after ``load_state_dict``)."""
    import torch

    modules = dict(model.named_modules())
    for name, entry in state.items():
        module = modules.get(name)
        if module is None:
            raise CheckpointError(f"quantiser statistics for unknown module {name!r}")
        module.counter = int(entry["counter"])
        with torch.no_grad():
            module.buffer.copy_(entry["buffer"])


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Any,
    config: ModelConfig,
    *,
    metrics: dict[str, Any] | None = None,
    data_spec: str = "",
    normalisation: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
    model_state: dict[str, Any] | None = None,
    model_stats: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file + ``os.replace``).

    Parameters
    ----------
    path : path-like
        Destination file (its folder must exist).
    model : torch.nn.Module
        A zoo model built from ``config``.
    config : ModelConfig
    metrics, normalisation, train_state : dict, optional
        Plain data (numbers, strings, lists, dicts, tensors).
    data_spec : str
        The data set the model was trained on.
    model_state, model_stats : dict, optional
        Weights (a state dict) and quantiser statistics to store instead of ``model``'s own
        (training keeps the best epoch's model while it continues from the last one).

    Returns
    -------
    Path
    """
    import torch

    from qnet import __version__

    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "qnet_version": __version__,
        "config": _plain(config.to_dict()),
        "state_dict": {
            k: v.detach().cpu().clone()
            for k, v in (model.state_dict() if model_state is None else model_state).items()
        },
        "stats_state": _cpu(stats_state(model) if model_stats is None else model_stats),
        "metrics": _plain(metrics or {}),
        "data_spec": str(data_spec),
        "normalisation": _plain(normalisation or {}),
        "train_state": train_state,
    }
    with atomic_file(path) as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint safely and rebuild its model (eval mode).

    Raises
    ------
    CheckpointError
        The file is missing, unreadable, truncated, not a qnet checkpoint, of an unknown format
        version, or its weights do not fit its model config.
    """
    import torch

    from qnet.models import build_model

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(
            f"{path}: is not a file (expected a qnet checkpoint, e.g. runs/x/model.ckpt)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/pickle/zipfile raise many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable qnet checkpoint (corrupt, truncated or another format): "
            f"{type(exc).__name__}: {first[:200]}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a qnet checkpoint (no '{FORMAT}' marker); was it written by qnet train?"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')!r} is not supported "
            f"(this qnet reads version {FORMAT_VERSION})"
        )
    for key in ("config", "state_dict", "stats_state", "metrics", "normalisation"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint field {key!r} is missing or malformed")
    try:
        config_dict = dict(payload["config"])
        for key in ("in_shape", "channels", "hidden"):
            if key in config_dict:
                config_dict[key] = tuple(config_dict[key])
        config = ModelConfig.from_dict(config_dict)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid model config in checkpoint: {exc}") from None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        model = build_model(config)
        try:
            model.load_state_dict(payload["state_dict"], strict=True)
            restore_stats_state(model, payload["stats_state"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: weights do not fit the {config.kind} model described in the checkpoint: "
                f"{str(exc).splitlines()[0][:300]}"
            ) from None
    model.eval()
    return Checkpoint(
        path=path,
        config=config,
        model=model,
        metrics=dict(payload["metrics"]),
        data_spec=str(payload.get("data_spec", "")),
        normalisation=dict(payload["normalisation"]),
        qnet_version=str(payload.get("qnet_version", "")),
        train_state=payload.get("train_state"),
        stats_state=dict(payload["stats_state"]),
    )


def require_kind(ckpt: Checkpoint, kinds: str | tuple[str, ...] | list[str]) -> Checkpoint:
    """Return ``ckpt`` if its model kind is one of ``kinds``, else raise :class:`CheckpointError`."""
    allowed = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if ckpt.config.kind not in allowed:
        raise CheckpointError(
            f"{ckpt.path}: holds a {ckpt.config.kind} model; this command needs "
            f"{' or '.join(allowed)}"
        )
    return ckpt


def _cpu(stats: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: {k: (v.detach().cpu().clone() if hasattr(v, "detach") else v) for k, v in e.items()}
        for name, e in stats.items()
    }


def _plain(value: Any) -> Any:
    """Tuples -> lists recursively is unnecessary for torch; keep only plain data types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")
