"""``qnet train`` and ``qnet evaluate``: train a model, or measure a checkpoint's accuracy."""

from __future__ import annotations

from pathlib import Path

import typer

from qnet.cli._app import app, console


@app.command("train")
def train_command(
    model: str = typer.Option(
        ...,
        "--model",
        help="convnet2d, convnet1d, lstm, mlp, or your own Brevitas model as "
        "path/to/file.py:function (returning (model, example_input)).",
    ),
    data: str = typer.Option(
        "digits", "--data", help="digits, digits-rows, digits-seq or a path to an .npz."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder (model.ckpt, metrics.json, training.png)."
    ),
    w_bits: int = typer.Option(4, "--w-bits", help="Weight bits (2..8)."),
    a_bits: int = typer.Option(4, "--a-bits", help="Activation bits (2..8)."),
    in_bits: int = typer.Option(8, "--in-bits", help="Input quantiser bits (2..8)."),
    channels: str | None = typer.Option(
        None, "--channels", help="Conv channels per block, e.g. 16,32 (convnets)."
    ),
    kernel_size: int | None = typer.Option(None, "--kernel-size", help="Conv kernel (convnets)."),
    hidden: str | None = typer.Option(
        None, "--hidden", help="Dense hidden sizes, e.g. 64 or 128,64; lstm: its hidden size."
    ),
    batchnorm: bool = typer.Option(
        False, "--batchnorm", help="BatchNorm after each conv (convnets)."
    ),
    dropout: float | None = typer.Option(
        None, "--dropout", help="Dropout before the classifier (default 0.2)."
    ),
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
    shift_prob: float = typer.Option(
        0.5, "--shift-prob", help="Fraction of augmented images shifted by +-1 pixel."
    ),
    noise_std: float = typer.Option(
        0.03, "--noise-std", help="Gaussian noise on augmented images."
    ),
    label_smoothing: float = typer.Option(
        0.0, "--label-smoothing", help="Cross-entropy label smoothing in [0, 1)."
    ),
    val_fraction: float = typer.Option(
        0.1,
        "--val-fraction",
        help="Training data held out for validation (0: none); the best epoch on it is kept.",
    ),
    early_stopping: int = typer.Option(
        0, "--early-stopping", help="Stop after N epochs without a better validation accuracy."
    ),
    input_norm: str = typer.Option(
        "auto",
        "--input-norm",
        help="auto, standardize, minmax or none (auto: standardize .npz inside the model, "
        "digits as pixel/16).",
    ),
    float_baseline: bool = typer.Option(
        False,
        "--float-baseline",
        help="Also train the same architecture without quantisers; report the quantisation cost.",
    ),
    warm_start: str = typer.Option(
        "auto",
        "--warm-start",
        help="float: train the float twin first and start from its weights (it is also the "
        "--float-baseline); none; auto: float for lstm and convnet1d, none otherwise.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: int | None = typer.Option(
        None, "--threads", help="Torch CPU threads (default 2; 1 is faster on a busy machine)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty --out."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --out/model.ckpt."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Quantisation-aware training of a zoo model or your own Brevitas model; writes a
    checkpoint (the best epoch on validation), metrics and curves."""
    from qnet.train import NUM_THREADS, TrainConfig, parse_sizes, prepare, resolve_device, train

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
        shift_prob=shift_prob,
        noise_std=noise_std,
        label_smoothing=label_smoothing,
        seed=seed,
        early_stopping=early_stopping,
        warm_start=warm_start,
    )
    resolve_device(device)
    model_config, dataset = prepare(
        model,
        data,
        seed=seed,
        val_fraction=val_fraction,
        input_norm=input_norm,
        w_bits=w_bits,
        a_bits=a_bits,
        in_bits=in_bits,
        channels=parse_sizes(channels, "--channels"),
        kernel_size=kernel_size,
        hidden=parse_sizes(hidden, "--hidden"),
        batchnorm=batchnorm,
        dropout=dropout,
    )
    result = train(
        model_config,
        train_config,
        dataset,
        out,
        resume=resume,
        force=force,
        quiet=quiet,
        num_threads=threads or NUM_THREADS,
        device=device,
        float_baseline=float_baseline,
    )
    m = result.metrics
    name = model if model_config.kind != "user" else f"user model {model}"
    val = f", val {100 * m['val_accuracy']:.2f} %" if "val_accuracy" in m else ""
    console.print(
        f"{name} w{w_bits}a{a_bits}i{in_bits} on {dataset.name}: test accuracy "
        f"{100 * m['test_accuracy']:.2f} %{val}, train accuracy {100 * m['train_accuracy']:.2f} %, "
        f"best epoch {m['best_epoch']} of {m['epochs']}, {m['seconds']:.1f} s -> "
        f"{result.checkpoint_path}"
    )
    if "float_baseline" in m:
        fb = m["float_baseline"]
        console.print(
            f"float baseline (same architecture, no quantisers): test accuracy "
            f"{100 * fb['test_accuracy']:.2f} %; quantisation cost "
            f"{100 * m['quantisation_cost']:+.2f} points"
        )


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="A model.ckpt written by qnet train."),
    data: str | None = typer.Option(
        None, "--data", help="Data set (default: the one it was trained on)."
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Split seed (default: the one it was trained with)."
    ),
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
