"""Where a model comes from, for every command that takes one.

A *model source* is one of:

* a qnet checkpoint (``model.ckpt`` written by ``qnet train``), or a run folder holding one;
* a user's own Brevitas model: ``path/to/file.py:function``, where ``function()`` returns
  ``(model, example_input)`` (a ``torch.nn.Module`` and a tensor of shape (1, *input shape));
* for commands that only need the hardware graph: an HwGraph file (``*.npz``) or a project
  folder written by ``qnet export`` / ``qnet rtl`` (holding ``hwgraph.npz``).

Errors name the source and what would be accepted.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qnet.errors import CheckpointError, ConfigError, QnetError

__all__ = ["ModelSource", "load_model", "load_graph", "is_user_model_spec"]


@dataclass
class ModelSource:
    """A loaded model: the Brevitas module in eval mode and an example input."""

    model: Any
    example_input: Any
    kind: str  # zoo kind ('convnet2d', ...) or 'user'
    origin: str
    checkpoint: Any = None  # qnet.checkpoint.Checkpoint when loaded from one
    meta: dict[str, Any] = field(default_factory=dict)


def is_user_model_spec(spec: str | Path) -> bool:
    """True for ``file.py:function`` specs."""
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    return bool(sep) and head.endswith(".py") and tail.isidentifier()


def _checkpoint_path(spec: Path) -> Path:
    if spec.is_dir():
        candidate = spec / "model.ckpt"
        if candidate.is_file():
            return candidate
        raise CheckpointError(
            f"{spec}: folder holds no model.ckpt (is it a `qnet train --out` folder?)"
        )
    return spec


def _load_user_model(spec: str) -> ModelSource:
    import torch

    file_text, _, func_name = spec.rpartition(":")
    path = Path(file_text)
    if not path.is_file():
        raise ConfigError(f"{spec}: no such Python file {path}")
    module_name = f"qnet_user_model_{abs(hash(path.resolve()))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"{spec}: cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except QnetError:
        raise
    except Exception as exc:
        raise ConfigError(f"{spec}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"{spec}: {path} has no function {func_name}()")
    try:
        result = func()
    except QnetError:
        raise
    except Exception as exc:
        raise ConfigError(f"{spec}: {func_name}() raised {type(exc).__name__}: {exc}") from exc
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ConfigError(f"{spec}: {func_name}() must return (model, example_input)")
    model, example = result
    if not isinstance(model, torch.nn.Module) or not isinstance(example, torch.Tensor):
        raise ConfigError(
            f"{spec}: {func_name}() must return (torch.nn.Module, torch.Tensor), got "
            f"({type(model).__name__}, {type(example).__name__})"
        )
    model.eval()
    return ModelSource(model=model, example_input=example, kind="user", origin=spec)


def load_model(spec: str | Path) -> ModelSource:
    """Load a model source (checkpoint, run folder, or ``file.py:function``)."""
    if is_user_model_spec(spec):
        return _load_user_model(str(spec))
    import torch

    from qnet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(_checkpoint_path(Path(spec)))
    example = torch.zeros((1, *ckpt.config.in_shape), dtype=torch.float32)
    return ModelSource(
        model=ckpt.model,
        example_input=example,
        kind=ckpt.config.kind,
        origin=str(spec),
        checkpoint=ckpt,
    )


def load_graph(spec: str | Path) -> Any:
    """An HwGraph from a graph file, an export/rtl project folder, or any model source."""
    from qnet.hw.graph import HwGraph

    path = Path(str(spec))
    if not is_user_model_spec(spec):
        if path.is_dir() and (path / "hwgraph.npz").is_file():
            return HwGraph.load(path / "hwgraph.npz")
        if path.suffix == ".npz":
            return HwGraph.load(path)
    if not is_user_model_spec(spec):
        from qnet.evaluation import lower_checkpoint

        return lower_checkpoint(_checkpoint_path(path))
    source = load_model(spec)
    from qnet.lowering import lower

    return lower(source.model, source.example_input)
