"""``qnet demo``: the whole product on built-in data, in named, timed steps.

Train a 4-bit ConvNet2d on ``digits`` -> lower it -> simulate it -> export the hls4ml project for
PYNQ-Z2 -> compile the C simulation and verify Brevitas == simulator == C simulation on the
test images -> estimate resources -> one summary and a report folder:

``metrics.json``, ``training.png``, ``confusion.png``, ``resources.png``, ``train/model.ckpt``,
``project/`` (hls4ml project, QONNX model, HwGraph file).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qnet.errors import OutputExistsError
from qnet.hw.atomic import atomic_write
from qnet.hw.options import DEFAULT_BOARD

__all__ = ["DemoResult", "run_demo"]

BOARD = DEFAULT_BOARD
DEMO_CHANNELS = (8, 16)
DEMO_HIDDEN = (32,)


@dataclass
class DemoResult:
    """What the demo measured (also written to ``metrics.json``)."""

    out_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    steps: list[tuple[str, float]] = field(default_factory=list)


def run_demo(
    out_dir: str | os.PathLike[str] = "qnet-demo",
    *,
    epochs: int = 20,
    n_verify: int = 200,
    force: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the end-to-end demo; see the module docstring.

    Parameters
    ----------
    out_dir : path-like
        Report folder; a non-empty one is refused unless ``force``.
    epochs : int
        Training epochs.
    n_verify : int
        Test images verified three ways (C simulation is the slow executor).
    """
    import torch

    from qnet.checkpoint import load_checkpoint
    from qnet.data import load_dataset
    from qnet.hw.boards import load_board
    from qnet.hw.estimator import estimate
    from qnet.hw.simulator import simulate
    from qnet.lowering import lower
    from qnet.plots import plot_confusion, plot_estimate
    from qnet.projects import export_project
    from qnet.train import TrainConfig, default_model_config, evaluate, train
    from qnet.verification import verify

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out} is not empty; use --force to overwrite the demo report")
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out_dir=out)
    m = result.metrics

    @contextmanager
    def step(name: str) -> Iterator[None]:
        log(f"[{len(result.steps) + 1}] {name} ...")
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        result.steps.append((name, dt))
        log(f"    done in {dt:.1f} s")

    with step("train a 4-bit ConvNet2d on digits"):
        data = load_dataset("digits", "convnet2d", seed=0)
        # Half the zoo's default width: still >= 95 % on digits, and it fits the PYNQ-Z2's
        # XC7Z020 fully unrolled (reuse factor 1); the default (16, 32)/64 needs ~170 % LUTs.
        config = default_model_config(
            "convnet2d",
            data,
            w_bits=4,
            a_bits=4,
            in_bits=8,
            channels=DEMO_CHANNELS,
            hidden=DEMO_HIDDEN,
        )
        trained = train(
            config, TrainConfig(epochs=epochs, seed=0), data, out / "train", force=True, quiet=quiet
        )
        for name in ("training.png",):
            src = out / "train" / name
            if src.exists():
                (out / name).write_bytes(src.read_bytes())
        ckpt = load_checkpoint(trained.checkpoint_path)
        model = ckpt.model
        m["train_accuracy"] = trained.metrics.get("train_accuracy")

    with step("lower to the hardware graph"):
        example = torch.zeros((1, *config.in_shape))
        graph = lower(model, example)
        m["layers"] = len(graph)
        m["input_type"] = str(graph.input_type)

    x_test, y_test = data.x_test, data.y_test
    with step(f"simulate {len(x_test)} test images (and run Brevitas on them)"):
        sim_out = simulate(graph, x_test)
        with torch.no_grad():
            brevitas_out = model(torch.from_numpy(x_test)).double().numpy()
        sim_pred = np.asarray(sim_out).argmax(1)
        m["accuracy_brevitas"] = evaluate(model, x_test, y_test)
        m["accuracy_simulator"] = float((sim_pred == y_test).mean())
        m["simulator_vs_brevitas_exact"] = int(np.sum(np.asarray(sim_out) == brevitas_out))
        m["simulator_vs_brevitas_total"] = int(brevitas_out.size)

    n = min(n_verify, len(x_test))
    with step(f"export the hls4ml project for {BOARD} (+ QONNX, HwGraph)"):
        summary = export_project(trained.checkpoint_path, out / "project", board=BOARD, force=True)
        m["export"] = {
            "backend": summary.backend,
            "part": summary.part,
            "clock_period_ns": summary.clock_period_ns,
            "files": list(summary.files),
            "notes": list(summary.notes),
        }

    with step(f"compile the C simulation and verify three ways on {n} test images"):
        report = verify(model, x_test[:n], board=BOARD, graph=graph)
        m["verify"] = report.to_dict()
        m["verify_table"] = report.table()
        csim = report.outputs["csim"]
        m["accuracy_csim"] = float((csim.argmax(1) == y_test[:n]).mean())
        m["accuracy_brevitas_on_verified"] = float(
            (report.outputs["brevitas"].argmax(1) == y_test[:n]).mean()
        )
        m["accuracy_simulator_on_verified"] = float((sim_pred[:n] == y_test[:n]).mean())
        m["all_exact"] = report.all_exact

    with step(f"estimate resources on {BOARD}"):
        board = load_board(BOARD)
        est = estimate(graph, board)
        m["estimate"] = est.to_dict()
        plot_estimate(est, out / "resources.png")

    plot_confusion(
        y_test,
        sim_pred,
        data.num_classes,
        out / "confusion.png",
        "4-bit ConvNet2d on digits (hardware)",
    )
    m["steps"] = {name: round(dt, 2) for name, dt in result.steps}
    m["seconds"] = round(sum(dt for _, dt in result.steps), 2)
    atomic_write(out / "metrics.json", json.dumps(m, indent=2, default=str))
    result.metrics = m
    return result
