"""The bad-input battery: the CLI as a user runs it, on inputs that must be refused cleanly.

Every case checks: non-zero exit code, a one-paragraph message on stderr that names the file,
field, layer or value at fault, no Python traceback, and that nothing was lost or left
half-written (existing checkpoints and projects unchanged, no temp files left behind).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

QNET = [sys.executable, "-c", "from qnet.cli import main; main()"]


def run(
    *args: str | Path, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [*QNET, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def tree_digest(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``path`` (a file or a folder)."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, a message naming every needle, no traceback; returns the message."""
    message = result.stderr.strip()
    assert result.returncode != 0, f"exit code 0 for a bad input:\n{result.stdout}\n{message}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert message, "no message on stderr"
    assert "\n\n" not in message, f"more than one paragraph:\n{message}"
    for needle in needles:
        assert needle.lower() in message.lower(), f"message does not name {needle!r}:\n{message}"
    return message


def no_temp_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".tmp")]
    assert not leftovers, f"temp files left behind: {leftovers}"


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("battery")


@pytest.fixture(scope="module")
def mlp_run(work: Path) -> Path:
    """A real (tiny) trained MLP checkpoint, made by the CLI."""
    out = work / "mlp"
    result = run(
        "train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", out, "--quiet"
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def ckpt(mlp_run: Path) -> Path:
    return mlp_run / "model.ckpt"


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def good_arrays(n: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.random((n, 8, 8)).astype(np.float32),
        "y_train": np.arange(n) % 3,
        "x_test": rng.random((n // 2, 8, 8)).astype(np.float32),
        "y_test": np.arange(n // 2) % 3,
    }


# ------------------------------------------------------------------------------ checkpoints
def test_missing_checkpoint(work: Path) -> None:
    assert_refused(run("evaluate", work / "nope.ckpt", "--data", "digits"), "nope.ckpt")


@pytest.mark.parametrize(
    "name,content",
    [
        ("truncated", None),
        ("random", os.urandom(4096)),
        ("wrongformat", b'{"this": "is json, not a checkpoint"}'),
    ],
)
def test_corrupt_checkpoint(work: Path, ckpt: Path, name: str, content: bytes | None) -> None:
    bad = work / f"{name}.ckpt"
    data = ckpt.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if content is None else content)
    for command in (["evaluate", bad, "--data", "digits"], ["inspect", bad]):
        assert_refused(run(*command), f"{name}.ckpt")


def test_checkpoint_of_another_kind(mlp_run: Path) -> None:
    # resuming an MLP run as a ConvNet2d: the command needs a convnet2d checkpoint
    before = tree_digest(mlp_run)
    result = run(
        "train",
        "--model",
        "convnet2d",
        "--data",
        "digits",
        "--epochs",
        "2",
        "--out",
        mlp_run,
        "--resume",
    )
    assert_refused(result, "mlp", "convnet2d")
    assert tree_digest(mlp_run) == before


# ------------------------------------------------------------------------------ data
@pytest.mark.parametrize(
    "case,needle",
    [
        ("missing_key", "x_test"),
        ("wrong_rank", "x_train"),
        ("nan", "nan"),
        ("label_range", "y_test"),
        ("empty_split", "x_test"),
    ],
)
def test_bad_npz(work: Path, case: str, needle: str) -> None:
    arrays = good_arrays()
    if case == "missing_key":
        del arrays["x_test"]
    elif case == "wrong_rank":
        arrays["x_train"] = arrays["x_train"].reshape(-1)
    elif case == "nan":
        arrays["x_train"][3, 2, 1] = np.nan
    elif case == "label_range":
        arrays["y_test"] = arrays["y_test"].copy()
        arrays["y_test"][5] = 7
    elif case == "empty_split":
        arrays["x_test"] = arrays["x_test"][:0]
        arrays["y_test"] = arrays["y_test"][:0]
    path = write_npz(work / f"{case}.npz", **arrays)
    out = work / f"out_{case}"
    assert_refused(
        run("train", "--model", "convnet2d", "--data", path, "--epochs", "1", "--out", out), needle
    )
    assert not out.exists() or not any(out.iterdir()), "a refused run left files behind"


# ------------------------------------------------------------------------------ names
def test_unknown_model(work: Path) -> None:
    assert_refused(
        run("train", "--model", "resnet50", "--data", "digits", "--out", work / "u1"), "resnet50"
    )


def test_unknown_dataset(work: Path) -> None:
    assert_refused(run("train", "--model", "mlp", "--data", "mnist", "--out", work / "u2"), "mnist")


def test_unknown_board(ckpt: Path) -> None:
    assert_refused(run("estimate", ckpt, "--board", "no-such-board"), "no-such-board")


def test_malformed_board_toml(work: Path, ckpt: Path) -> None:
    bad = work / "myboard.toml"
    bad.write_text(
        'name = "mine"\nvendor = "x"\nfamily = "zynq7000"\npart = 12\n[resources\nlut = -5\n'
    )
    assert_refused(run("estimate", ckpt, "--board", bad), "myboard.toml")


@pytest.mark.parametrize("bits", ["0", "1", "9", "17"])
def test_bad_bit_widths(work: Path, bits: str) -> None:
    out = work / f"bits{bits}"
    assert_refused(
        run("train", "--model", "mlp", "--data", "digits", "--w-bits", bits, "--out", out), bits
    )
    assert not out.exists()


# ------------------------------------------------------------------------------ export
def test_reuse_factor_that_does_not_divide(work: Path, ckpt: Path) -> None:
    out = work / "rf_prj"
    assert_refused(
        run("export", ckpt, "--board", "pynq-z2", "--out", out, "--reuse-factor", "7"), "reuse"
    )
    assert not out.exists()
    no_temp_files(work)


def test_existing_output_folder_is_kept(work: Path, mlp_run: Path) -> None:
    before = tree_digest(mlp_run)
    assert_refused(
        run("train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", mlp_run),
        "--force",
    )
    assert tree_digest(mlp_run) == before, "a refused run changed an existing folder"


def test_existing_export_project_is_kept(work: Path, ckpt: Path) -> None:
    prj = work / "existing_prj"
    prj.mkdir()
    (prj / "keep.txt").write_text("user data")
    before = tree_digest(prj)
    assert_refused(run("export", ckpt, "--board", "pynq-z2", "--out", prj), str(prj.name))
    assert tree_digest(prj) == before


def test_unwritable_output(work: Path) -> None:
    blocker = work / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "sub"
    assert_refused(
        run("train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", out), "a_file"
    )


# ------------------------------------------------------------------------------ user models
USER_MODELS = """
import torch
from torch import nn
import brevitas.nn as qnn
from brevitas.quant import Int8WeightPerTensorFloat


def unsupported():
    model = nn.Sequential(qnn.QuantIdentity(return_quant_tensor=True), nn.Flatten(), nn.GELU())
    return model.eval(), torch.zeros(1, 1, 8, 8)


def float_scale():
    model = nn.Sequential(
        qnn.QuantIdentity(return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(64, 10, bias=False, weight_quant=Int8WeightPerTensorFloat),
    )
    with torch.no_grad():
        model[2].weight.uniform_(-0.3, 0.3)
    return model.eval(), torch.zeros(1, 1, 8, 8)
"""


@pytest.fixture(scope="module")
def user_models(work: Path) -> Path:
    path = work / "user_models.py"
    path.write_text(USER_MODELS)
    return path


def test_user_model_with_unsupported_layer(user_models: Path) -> None:
    msg = assert_refused(run("inspect", f"{user_models}:unsupported"))
    assert "GELU" in msg and "2" in msg, msg  # the class and its path in the model


def test_user_model_with_non_power_of_two_scale(user_models: Path) -> None:
    """A float weight scale (Brevitas' default) is lowered: integer hardware, host affine."""
    out = run("inspect", f"{user_models}:float_scale")
    assert out.returncode == 0, out.stdout + out.stderr
    hw, post = out.stdout.split("host postprocessing")
    assert "dense" in hw and "ap_fixed<8,8>" in hw  # the integer weights
    assert "affine" in post


# ------------------------------------------------------------------------------ interrupt
def test_keyboard_interrupt_then_resume(work: Path) -> None:
    out = work / "interrupted"
    # far more epochs than it can finish before the interrupt; the resumed run stops 2 later
    args = [
        *QNET,
        "train",
        "--model",
        "mlp",
        "--data",
        "digits",
        "--epochs",
        "500",
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = out / "model.ckpt"
    deadline = time.monotonic() + 240
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), "no checkpoint was written before the deadline"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0, "training was not interrupted"
    assert "Traceback" not in stderr, stderr
    match = re.search(r"holds epoch (\d+)", stderr)
    assert match, f"the message does not say which epoch the checkpoint holds:\n{stderr}"
    done = int(match.group(1))
    no_temp_files(out)
    # the checkpoint left behind is complete: evaluate loads it
    assert run("evaluate", ckpt, "--data", "digits").returncode == 0
    target = str(done + 2)
    resumed = run(
        "train",
        "--model",
        "mlp",
        "--data",
        "digits",
        "--epochs",
        target,
        "--out",
        out,
        "--resume",
        "--quiet",
    )
    assert resumed.returncode == 0, resumed.stderr
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == done + 2


# ------------------------------------------------------------------------------ simulate
def test_simulate_streams_an_npz(ckpt: Path, work: Path) -> None:
    """``qnet simulate`` on an uncompressed .npz: memory-mapped, small batches and chunks,
    every output equal to Brevitas'; a NaN sample is refused with its index."""
    rng = np.random.default_rng(5)
    arrays = {
        "x_train": rng.uniform(0, 16, (60, 8, 8)).astype(np.float32),
        "y_train": np.arange(60) % 10,
        "x_test": rng.uniform(-2, 18, (301, 8, 8)).astype(np.float32),
        "y_test": np.arange(301) % 10,
    }
    path = write_npz(work / "stream.npz", **arrays)
    result = run("simulate", ckpt, "--data", path, "--batch-size", "64", "--memory-mb", "0.05")
    assert result.returncode == 0, result.stderr
    assert "301 samples" in result.stdout
    assert "exact outputs:      3010 / 3010" in result.stdout, result.stdout
    quick = run("simulate", ckpt, "--data", path, "--no-brevitas")
    assert quick.returncode == 0 and "brevitas" not in quick.stdout.lower(), quick.stdout
    arrays["x_test"][200, 3, 1] = np.inf
    bad = write_npz(work / "stream_bad.npz", **arrays)
    assert_refused(
        run("simulate", ckpt, "--data", bad, "--batch-size", "64"),
        "stream_bad.npz",
        "x_test",
        "200",
    )
