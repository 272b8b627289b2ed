"""The recipe of a ``qnet train`` run: optimisation settings, default architectures per data
set, the CLI's architecture options, the data set and model of a run, the device.

Everything here is cheap to import: torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qnet.data import Dataset
from qnet.errors import ConfigError
from qnet.models.config import ModelConfig

__all__ = [
    "TrainConfig",
    "default_model_config",
    "ARCHITECTURE_OPTIONS",
    "parse_sizes",
    "architecture_overrides",
    "prepare",
    "resolve_device",
]

_OPTIMIZERS = ("adam", "sgd")
_SCHEDULES = ("cosine", "step")
_WARM_STARTS = ("auto", "float", "none")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Parameters
    ----------
    optimizer : {'adam', 'sgd'}
    lr : float
        Initial learning rate.
    momentum : float
        SGD momentum (ignored by Adam).
    epochs : int
    batch_size : int
    schedule : {'cosine', 'step'}
        Cosine decay to 0 over the run, or x0.1 at 50 % and 75 % of the epochs.
    weight_decay : float
        L2 on conv/linear weights only (not biases, BatchNorm or quantiser scales).
    augment : bool or None
        Random +/-1 pixel shifts and small noise; None = on for digits images (convnet2d).
    shift_prob : float
        Fraction of the augmented samples that are shifted (by -1, 0 or +1 pixel in each
        direction); the others keep their position. 8x8 digits fill their frame, so shifting
        every sample cuts strokes off too often (measured: 8-bit ConvNet2d 97.2 % at 1.0,
        99.4 % at 0.5).
    noise_std : float
        Standard deviation of the Gaussian noise added to augmented images (then clipped to
        [0, 1]).
    label_smoothing : float
        Cross-entropy label smoothing in [0, 1).
    seed : int
    early_stopping : int
        Stop after this many epochs without a better validation accuracy (0: never; needs a
        validation split).
    warm_start : {'auto', 'float', 'none'}
        ``float``: first train the same architecture without quantisers (same recipe and
        seed), then start quantisation-aware training from its weights (it also serves as the
        ``--float-baseline``). ``auto``: ``float`` for the zoo's lstm and convnet1d, ``none``
        otherwise. Measured (``benchmarks/accuracy.py``, seed 0, 30 epochs): lstm on the 1-D
        signals set 4-bit 80.5 % cold, 87.7 % warm (float 88.8 %), on the 64-step sequences
        4-bit 98.8 % warm (87.6 % before); convnet1d on digits-rows 8-bit 96.1 % cold, 96.4 %
        warm (float 97.2 %). The float twins train 4-20x faster than their quantised models,
        so the warm start costs little; convnet2d and mlp meet their targets cold.
    """

    optimizer: str = "adam"
    lr: float = 0.01
    momentum: float = 0.9
    epochs: int = 30
    batch_size: int = 64
    schedule: str = "cosine"
    weight_decay: float = 1e-4
    augment: bool | None = None
    shift_prob: float = 0.5
    noise_std: float = 0.03
    label_smoothing: float = 0.0
    seed: int = 0
    early_stopping: int = 0
    warm_start: str = "auto"

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(
                f"optimizer {self.optimizer!r} unknown; choose {' or '.join(_OPTIMIZERS)}"
            )
        if self.schedule not in _SCHEDULES:
            raise ConfigError(
                f"schedule {self.schedule!r} unknown; choose {' or '.join(_SCHEDULES)}"
            )
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ConfigError(f"batch-size must be a positive integer, got {self.batch_size!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight-decay must be >= 0, got {self.weight_decay!r}")
        for name in ("shift_prob", "noise_std"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {value!r}")
        if self.shift_prob > 1:
            raise ConfigError(f"shift-prob must be in [0, 1], got {self.shift_prob!r}")
        if not (
            isinstance(self.label_smoothing, int | float) and 0.0 <= self.label_smoothing < 1.0
        ):
            raise ConfigError(f"label-smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        stop = self.early_stopping
        if isinstance(stop, bool) or not isinstance(stop, int) or stop < 0:
            raise ConfigError(
                f"early-stopping must be a non-negative number of epochs, got {stop!r}"
            )
        if self.warm_start not in _WARM_STARTS:
            raise ConfigError(
                f"warm-start {self.warm_start!r} unknown; choose {', '.join(_WARM_STARTS)}"
            )

    def warm_starts(self, kind: str) -> bool:
        """Whether a model of ``kind`` starts from its float twin's weights."""
        auto = kind in ("lstm", "convnet1d")
        return self.warm_start == "float" or (self.warm_start == "auto" and auto)


def default_model_config(
    kind: str,
    dataset: Dataset,
    *,
    w_bits: int = 4,
    a_bits: int = 4,
    in_bits: int = 8,
    **overrides: Any,
) -> ModelConfig:
    """The zoo's default architecture of ``kind`` for ``dataset``.

    The input preprocessing follows the data set: standardised data (``.npz`` by default) make
    a model that standardises inside its forward, with a signed input quantiser covering the
    data set's power-of-two ``input_range``; digits keep the unsigned [0, 1) quantiser.

    Defaults per kind and bit width (any field can be overridden):

    - convnets: channels (16, 32), hidden (64,); with 2-bit weights or activations channels
      (32, 64), hidden (128,) (measured on digits, 30 epochs: 2-bit (16, 32)/64 reaches ~92 %,
      (32, 64)/128 ~98 %; accumulators stay far below 2**24 lsb);
    - lstm: hidden 32, dropout 0.2 before the classifier (measured on digits-rows, seeds 0-2:
      without dropout 94.4 % at seed 0, with it 96.1-97.8 %; hidden 48 gains only ~0.3 %);
    - mlp: hidden (64,).
    """
    values: dict[str, Any] = {
        "kind": kind,
        "in_shape": dataset.in_shape,
        "num_classes": dataset.num_classes,
        "w_bits": w_bits,
        "a_bits": a_bits,
        "in_bits": in_bits,
        "standardize": dataset.input_norm == "standardize",
        "in_signed": bool(dataset.input_signed),
        "in_range": float(dataset.input_range),
    }
    if kind in ("convnet2d", "convnet1d") and min(w_bits, a_bits) <= 2:
        values["channels"] = (32, 64)
        values["hidden"] = (128,)
    if kind == "lstm":
        values["hidden"] = (32,)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig(**values)


#: Which architecture options apply to which model kind.
ARCHITECTURE_OPTIONS: dict[str, tuple[str, ...]] = {
    "convnet2d": ("channels", "kernel_size", "hidden", "batchnorm", "dropout"),
    "convnet1d": ("channels", "kernel_size", "hidden", "batchnorm", "dropout"),
    "lstm": ("hidden", "dropout"),
    "mlp": ("hidden", "dropout"),
    "user": (),
}


def parse_sizes(text: str | None, option: str) -> tuple[int, ...] | None:
    """``"16,32"`` -> ``(16, 32)`` (None stays None); :class:`ConfigError` naming ``option``."""
    if text is None:
        return None
    try:
        sizes = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(v < 1 for v in sizes):
        raise ConfigError(
            f"{option} {text!r}: give positive integers separated by commas (e.g. 16,32)"
        )
    return sizes


def architecture_overrides(kind: str, **options: Any) -> dict[str, Any]:
    """Check architecture options (None = not given) against ``kind`` and return those given.

    Raises :class:`ConfigError` for an option that does not apply to ``kind`` (e.g.
    ``--channels`` for an lstm, any of them for a user's own model) or an LSTM with more than
    one hidden size.
    """
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    allowed = ARCHITECTURE_OPTIONS.get(kind, ())
    wrong = [k for k in given if k not in allowed]
    if wrong:
        names = ", ".join("--" + k.replace("_", "-") for k in wrong)
        what = (
            "a user's own model defines its own architecture"
            if kind == "user"
            else f"{kind} takes only {', '.join('--' + a.replace('_', '-') for a in allowed)}"
        )
        raise ConfigError(f"{names} does not apply to --model {kind}: {what}")
    if kind == "lstm" and "hidden" in given and len(given["hidden"]) != 1:
        raise ConfigError(
            f"--hidden {','.join(map(str, given['hidden']))}: lstm takes one hidden size "
            "(one QuantLSTM layer), e.g. --hidden 64"
        )
    return given


def prepare(
    model: str,
    data: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    input_norm: str = "auto",
    w_bits: int = 4,
    a_bits: int = 4,
    in_bits: int = 8,
    **architecture: Any,
) -> tuple[ModelConfig, Dataset]:
    """The model config and data set of a ``qnet train`` run.

    ``model`` is a zoo kind or a user's ``file.py:function`` (its data are laid out as its
    example input and kept as they are unless ``input_norm`` says otherwise). ``architecture``
    holds ``channels``, ``kernel_size``, ``hidden``, ``batchnorm``, ``dropout`` (None = the
    default), checked by :func:`architecture_overrides`.
    """
    from qnet.data import load_dataset
    from qnet.sources import is_user_model_spec

    if is_user_model_spec(model):
        architecture_overrides("user", **architecture)
        from qnet.models.user import user_model_config

        config, in_shape = user_model_config(model, 2)
        dataset = load_dataset(
            data,
            "user",
            seed=seed,
            val_fraction=val_fraction,
            input_norm=input_norm,
            in_shape=in_shape,
        )
        from dataclasses import replace

        config = replace(
            config,
            num_classes=dataset.num_classes,
            standardize=dataset.input_norm == "standardize",
        )
        from qnet.models.user import build_user_model

        build_user_model(config)  # checks the logits' shape against the data's classes
        return config, dataset
    # Validate the cheap options first, so a typo does not wait for the data.
    ModelConfig(
        kind=model, in_shape=(1,), num_classes=2, w_bits=w_bits, a_bits=a_bits, in_bits=in_bits
    )
    overrides = architecture_overrides(model, **architecture)
    dataset = load_dataset(data, model, seed=seed, val_fraction=val_fraction, input_norm=input_norm)
    config = default_model_config(
        model, dataset, w_bits=w_bits, a_bits=a_bits, in_bits=in_bits, **overrides
    )
    return config, dataset


def resolve_device(device: str = "auto") -> Any:
    """``auto`` (a GPU when torch sees one, else the CPU), ``cpu`` or ``cuda[:N]`` ->
    :class:`torch.device`; :class:`ConfigError` for anything else or a missing GPU."""
    import torch

    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device}: torch sees no CUDA GPU on this machine; use --device cpu "
                "or auto"
            )
        return torch.device(text)
    raise ConfigError(f"--device {device!r} unknown; choose auto, cpu or cuda (cuda:N)")
