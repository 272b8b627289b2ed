"""Figures qnet writes (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from qnet.hw.atomic import atomic_write

__all__ = ["plot_estimate", "plot_confusion"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, dpi: int = 100) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    _pyplot().close(fig)
    return atomic_write(path, buf.getvalue())


def plot_estimate(est: Any, path: str | os.PathLike[str]) -> Path:
    """Per-layer LUT / FF / DSP / BRAM bars of a :class:`qnet.hw.estimator.Estimate`."""
    plt = _pyplot()
    rows = [r for r in est.layers if r.lut or r.ff or r.dsp or r.bram_18k]
    keys = ("LUT", "FF", "DSP", "BRAM_18K")
    fig, axes = plt.subplots(1, 4, figsize=(14, 0.4 * len(rows) + 2), sharey=True)
    y = np.arange(len(rows))
    for ax, key in zip(axes, keys, strict=True):
        ax.barh(y, [r.resources()[key] for r in rows], color="tab:blue")
        ax.set_title(f"{key} ({est.utilisation[key]:.1f}% of {est.board})")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [f"{r.name} ({r.kind})" for r in rows])
    axes[0].invert_yaxis()
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_confusion(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    path: str | os.PathLike[str],
    title: str,
) -> Path:
    """Confusion matrix (counts) of integer labels ``y_true`` vs ``y_pred``."""
    plt = _pyplot()
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    im = ax.imshow(cm, cmap="Blues")
    for i in range(num_classes):
        for j in range(num_classes):
            if cm[i, j]:
                color = "white" if cm[i, j] > cm.max() / 2 else "black"
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true label")
    ax.set_xticks(range(num_classes))
    ax.set_yticks(range(num_classes))
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, Path(path), dpi=110)
