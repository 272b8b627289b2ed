"""Trial bookkeeping shared by ``qnet sweep`` and ``qnet search``.

Both train zoo models as executor tasks (:func:`train_point_task`), keep every trial in its own
folder under a resumable output folder that holds a settings manifest
(:func:`check_output_folder`, :func:`write_manifest`), and record each finished task there:
its files (:func:`store_result`) or its error (:func:`store_error`, ``error.txt``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qnet.errors import ConfigError, OutputExistsError
from qnet.hw.atomic import atomic_write

__all__ = [
    "train_point_task",
    "store_files",
    "store_result",
    "store_error",
    "check_output_folder",
    "write_manifest",
]


def check_output_folder(out: Path, manifest: str, what: str, force: bool) -> dict[str, Any] | None:
    """Check ``--out`` of a resumable run; return the settings of the run it holds.

    Returns None when ``out`` does not exist, is empty, or ``force`` is given (the caller
    starts over); otherwise the manifest ``out / manifest`` that an earlier run wrote.

    Raises
    ------
    OutputExistsError
        ``out`` is a file, or a non-empty folder without the manifest (not a ``what``).
    ConfigError
        The manifest is unreadable.
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} exists and is not a folder")
    if force or not out.is_dir() or not any(out.iterdir()):
        return None
    path = out / manifest
    if not path.is_file():
        raise OutputExistsError(f"--out {out} is not empty and holds no {what}; use --force")
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); use another folder or --force") from None
    if not isinstance(old, dict):
        raise ConfigError(f"{path}: not a {what} manifest; use another folder or --force")
    return old


def write_manifest(out: Path, manifest: str, settings: Mapping[str, Any]) -> None:
    """Write the run's settings into ``out / manifest`` (atomically)."""
    atomic_write(out / manifest, json.dumps(dict(settings), indent=2))


def train_point_task(
    model: str,
    data: str,
    w_bits: int,
    a_bits: int,
    epochs: int | None,
    seed: int,
    num_threads: int,
    model_overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one zoo model in a temporary folder and return its metrics and files (as bytes).

    Runs on whatever worker the executor picks (this process, or a Ray worker on another
    machine); the caller writes the files into its output folder.
    """
    import tempfile

    from qnet.data import load_dataset
    from qnet.train import TrainConfig, default_model_config, train

    dataset = load_dataset(data, model, seed)
    tcfg = TrainConfig(seed=seed) if epochs is None else TrainConfig(epochs=epochs, seed=seed)
    mcfg = default_model_config(
        model, dataset, w_bits=w_bits, a_bits=a_bits, **dict(model_overrides or {})
    )
    with tempfile.TemporaryDirectory(prefix="qnet-point-") as tmp:
        run = Path(tmp) / "run"
        result = train(mcfg, tcfg, dataset, run, quiet=True, num_threads=num_threads)
        files = {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}
        checkpoint = result.checkpoint_path.name
    return {
        "test_accuracy": float(result.metrics["test_accuracy"]),
        "metrics": json.loads(json.dumps(result.metrics, default=str)),
        "files": files,
        "checkpoint": checkpoint,
    }


def store_files(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write a task's returned files into ``folder`` (each atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        if Path(name).name != name:
            raise ConfigError(f"a task returned a file name with a folder in it: {name!r}")
        atomic_write(folder / name, blob)


def store_result(folder: Path, files: Mapping[str, bytes]) -> None:
    """Record a task that succeeded: its files into ``folder``, an old ``error.txt`` removed."""
    store_files(folder, files)
    (folder / "error.txt").unlink(missing_ok=True)


def store_error(folder: Path, error: str) -> None:
    """Record a task that failed: its error (traceback) in ``folder / "error.txt"``."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "error.txt", error + "\n")
