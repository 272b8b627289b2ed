"""Checkpoint evaluation: lower a checkpoint, and compare the simulator with Brevitas on data."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from qnet.errors import CheckpointError
from qnet.hw.graph import HwGraph
from qnet.lowering import lower

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from brevitas.quant_tensor import QuantTensor

__all__ = ["lower_checkpoint", "simulate_checkpoint", "SimulationReport"]


def lower_checkpoint(path_or_ckpt: Any) -> HwGraph:
    """Load a qnet checkpoint (path or loaded object) and lower its model.

    The example input is zeros of shape ``(1, *config.in_shape)``.
    """
    ckpt = path_or_ckpt
    if isinstance(path_or_ckpt, str | os.PathLike):
        from qnet.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path_or_ckpt)
    model = getattr(ckpt, "model", None)
    config = getattr(ckpt, "config", None)
    if model is None or config is None:
        raise CheckpointError(f"{path_or_ckpt!r} is not a qnet checkpoint (no model/config)")
    graph = lower(model, torch.zeros((1, *config.in_shape)))
    meta = dict(graph.meta)
    meta["config"] = config.to_dict()
    return HwGraph(graph.layers, meta)


@dataclass(frozen=True)
class SimulationReport:
    """Simulator vs Brevitas on one data split (see :func:`simulate_checkpoint`)."""

    split: str
    samples: int
    simulator_accuracy: float
    brevitas_accuracy: float
    exact_outputs: int
    total_outputs: int
    float32_inexact: tuple[str, ...]


def simulate_checkpoint(
    path_or_ckpt: Any,
    data: str | None = None,
    split: str = "test",
    seed: int = 0,
    batch_size: int = 1024,
) -> SimulationReport:
    """Run the simulator and Brevitas on a data split of a checkpoint's data set and compare.

    ``data`` defaults to the data set the checkpoint was trained on; ``split`` is ``test``,
    ``val`` or ``train``.
    """
    from qnet.checkpoint import load_checkpoint
    from qnet.data import checkpoint_split
    from qnet.hw.simulator import simulate

    ckpt = (
        load_checkpoint(path_or_ckpt)
        if isinstance(path_or_ckpt, str | os.PathLike)
        else path_or_ckpt
    )
    graph = lower_checkpoint(ckpt)
    dataset, x, y = checkpoint_split(ckpt, data, split, seed)
    sim_correct = brev_correct = exact = total = 0
    model = ckpt.model.eval()
    for start in range(0, len(x), batch_size):
        xb = np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)
        yb = y[start : start + batch_size]
        got = np.asarray(simulate(graph, xb.astype(np.float64)))
        with torch.no_grad():
            out = model(torch.from_numpy(xb))
        want = (out.value if isinstance(out, QuantTensor) else out).double().numpy()
        sim_correct += int((got.argmax(1) == yb).sum())
        brev_correct += int((want.argmax(1) == yb).sum())
        exact += int((got == want).sum())
        total += want.size
    n = max(len(x), 1)
    return SimulationReport(
        split,
        len(x),
        sim_correct / n,
        brev_correct / n,
        exact,
        total,
        tuple(graph.meta.get("float32_inexact", ())),
    )
