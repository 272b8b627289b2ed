"""Checkpoint evaluation: lower a checkpoint, and compare the simulator with Brevitas on data."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
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
    return HwGraph(graph.layers, meta, graph.pre, graph.post)


@dataclass(frozen=True)
class SimulationReport:
    """Simulator vs Brevitas on one data split (see :func:`simulate_checkpoint`).

    ``brevitas_accuracy`` and ``exact_outputs`` are None when Brevitas was not run.
    """

    split: str
    samples: int
    simulator_accuracy: float
    brevitas_accuracy: float | None
    exact_outputs: int | None
    total_outputs: int
    float32_inexact: tuple[str, ...]
    seconds: float = 0.0


def simulate_checkpoint(
    path_or_ckpt: Any,
    data: str | None = None,
    split: str = "test",
    seed: int | None = None,
    batch_size: int | None = None,
    brevitas: bool = True,
    progress: Callable[[int, int], None] | None = None,
    memory_budget: int | None = None,
) -> SimulationReport:
    """Run the simulator (and Brevitas) on a data split of a checkpoint's data set and compare.

    ``data`` defaults to the data set the checkpoint was trained on; ``split`` is ``test``,
    ``val`` or ``train``, split with the seed the model was trained with (``seed`` overrides
    it). An ``.npz`` is memory-mapped and streamed in batches
    (:func:`qnet.data.checkpoint_stream`), so a split bigger than memory works; memory stays
    bounded by the batch and the simulator's ``memory_budget``. ``progress(done, total)`` is
    called after every batch. ``brevitas=False`` runs only the simulator.
    """
    import time

    from qnet.checkpoint import load_checkpoint
    from qnet.data import checkpoint_stream
    from qnet.hw.simulator import simulate

    ckpt = (
        load_checkpoint(path_or_ckpt)
        if isinstance(path_or_ckpt, str | os.PathLike)
        else path_or_ckpt
    )
    graph = lower_checkpoint(ckpt)
    stream = checkpoint_stream(ckpt, data, split, seed)
    if batch_size is None:  # Brevitas' activations are ~16x the float32 input per sample
        sample_bytes = 4 * int(np.prod(stream.in_shape))
        batch_size = max(64, min(16384, (32 << 20) // (16 * sample_bytes)))
    sim_correct = brev_correct = exact = total = done = 0
    model = ckpt.model.eval()
    t0 = time.perf_counter()
    for xb, yb in stream.batches(batch_size):
        got = np.asarray(simulate(graph, xb, memory_budget=memory_budget))
        sim_correct += int((got.argmax(1) == yb).sum())
        total += got.size
        if brevitas:
            with torch.no_grad():
                out = model(torch.from_numpy(xb))
            want = (out.value if isinstance(out, QuantTensor) else out).double().numpy()
            brev_correct += int((want.argmax(1) == yb).sum())
            exact += int((got == want).sum())
        done += len(xb)
        if progress is not None:
            progress(done, len(stream))
    n = max(len(stream), 1)
    return SimulationReport(
        split,
        len(stream),
        sim_correct / n,
        brev_correct / n if brevitas else None,
        exact if brevitas else None,
        total,
        tuple(graph.meta.get("float32_inexact", ())),
        time.perf_counter() - t0,
    )
