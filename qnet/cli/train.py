"""``qnet train`` and ``qnet evaluate``: train a zoo model, or measure a checkpoint's accuracy."""

from __future__ import annotations

from pathlib import Path

import typer

from qnet.cli._app import app, console


@app.command("train")
def train_command(
    model: str = typer.Option(..., "--model", help="convnet2d, convnet1d, lstm or mlp."),
    data: str = typer.Option("digits", "--data", help="digits, digits-rows or a path to an .npz."),
    out: Path = typer.Option(
        ..., "--out", help="Output folder (model.ckpt, metrics.json, training.png)."
    ),
    w_bits: int = typer.Option(4, "--w-bits", help="Weight bits (2..8)."),
    a_bits: int = typer.Option(4, "--a-bits", help="Activation bits (2..8)."),
    in_bits: int = typer.Option(8, "--in-bits", help="Input quantiser bits (2..8)."),
    epochs: int = typer.Option(30, "--epochs", help="Training epochs."),
    seed: int = typer.Option(0, "--seed", help="Seed: same seed, same weights (bit for bit)."),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam or sgd."),
    lr: float | None = typer.Option(
        None, "--lr", help="Learning rate (default: 0.01 adam, 0.05 sgd)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Mini-batch size."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine or step."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="L2 on weights."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Turn off shifts/noise on images."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty --out."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --out/model.ckpt."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Quantisation-aware training of a zoo model; writes a checkpoint, metrics and curves."""
    from qnet.data import load_dataset
    from qnet.models.config import ModelConfig
    from qnet.train import TrainConfig, default_model_config, train

    # Validate the cheap options first, so a typo does not wait for torch to import.
    ModelConfig(
        kind=model, in_shape=(1,), num_classes=2, w_bits=w_bits, a_bits=a_bits, in_bits=in_bits
    )
    if lr is None:
        lr = 0.05 if optimizer == "sgd" else 0.01
    train_config = TrainConfig(
        optimizer=optimizer,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        schedule=schedule,
        weight_decay=weight_decay,
        augment=False if no_augment else None,
        seed=seed,
    )
    dataset = load_dataset(data, model, seed=seed)
    model_config = default_model_config(
        model, dataset, w_bits=w_bits, a_bits=a_bits, in_bits=in_bits
    )
    result = train(
        model_config, train_config, dataset, out, resume=resume, force=force, quiet=quiet
    )
    m = result.metrics
    console.print(
        f"{model} w{w_bits}a{a_bits}i{in_bits} on {dataset.name}: test accuracy "
        f"{100 * m['test_accuracy']:.2f} %, train accuracy {100 * m['train_accuracy']:.2f} %, "
        f"{m['epochs']} epochs in {m['seconds']:.1f} s -> {result.checkpoint_path}"
    )


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="A model.ckpt written by qnet train."),
    data: str | None = typer.Option(
        None, "--data", help="Data set (default: the one it was trained on)."
    ),
    seed: int = typer.Option(0, "--seed", help="Split seed of the built-in data sets."),
    split: str = typer.Option("test", "--split", help="test, train or val."),
) -> None:
    """Print the accuracy of a saved model on a data set."""
    from qnet.checkpoint import load_checkpoint
    from qnet.data import checkpoint_split
    from qnet.train import evaluate

    ckpt = load_checkpoint(checkpoint)
    dataset, x, y = checkpoint_split(ckpt, data, split, seed)
    acc = evaluate(ckpt.model, x, y)
    console.print(
        f"{ckpt.config.kind} on {dataset.name} ({split}, {len(y)} samples): accuracy {100 * acc:.2f} % ({acc:.4f})"
    )
