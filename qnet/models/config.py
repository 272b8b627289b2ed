"""``ModelConfig``: the small frozen description of a zoo model, saved in every checkpoint."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from qnet.errors import ConfigError

__all__ = ["ModelConfig", "MODEL_KINDS", "USER_KIND", "MIN_BITS", "MAX_BITS"]

MODEL_KINDS = ("convnet2d", "convnet1d", "lstm", "mlp")
#: Kind of a user's own model (``file.py:function``) trained by ``qnet train``.
USER_KIND = "user"
MIN_BITS, MAX_BITS = 2, 8


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and quantisation of a zoo model.

    Parameters
    ----------
    kind : str
        One of ``convnet2d``, ``convnet1d``, ``lstm``, ``mlp``.
    in_shape : tuple of int
        Per-sample input shape without batch: ``(C, H, W)`` for convnet2d, ``(C, L)`` for
        convnet1d, ``(T, F)`` for lstm, ``(F,)`` for mlp (images are flattened).
    num_classes : int
        Number of output classes K.
    w_bits, a_bits, in_bits : int
        Bit widths of weights, activations and the input quantiser, each 2..8.
    channels : tuple of int
        Output channels of each conv block (convnets only).
    hidden : tuple of int
        Hidden sizes: dense hidden layers (convnets, mlp) or the LSTM hidden size (lstm: one
        entry).
    kernel_size : int
        Conv kernel size.
    batchnorm : bool
        BatchNorm between each conv and its QuantReLU.
    dropout : float
        Dropout probability before the last linear layer(s).
    standardize : bool
        The model standardises its input in its forward, before the input quantiser:
        ``(x - mean) / std`` with float32 buffers ``mean``/``std`` (per channel for convnets,
        per feature for lstm and mlp) that are part of the model's state (set by
        :func:`qnet.train.train` from the training split).
    in_signed : bool
        Signed input quantiser (``[-in_range, in_range)``) instead of unsigned
        (``[0, in_range)``).
    in_range : float
        Power of two: the input quantiser's range (its scale is ``in_range / 2**(in_bits - 1)``
        signed, ``in_range / 2**in_bits`` unsigned).
    quantize : bool
        False builds the same architecture from plain float torch layers (the float baseline);
        the bit widths are then ignored.
    source : str
        Kind ``user`` only: the ``file.py:function`` that returns the user's own Brevitas model
        (``(model, example_input)``, as every command accepts); the zoo fields above other than
        ``in_shape``, ``num_classes`` and ``standardize`` do not apply to it.
    layer_w_bits : tuple of int
        Per-layer weight bits (convnets, mlp): one per weighted layer in order (convs, hidden
        dense layers, classifier); empty: ``w_bits`` everywhere.
    layer_a_bits : tuple of int
        Per-layer activation bits: one per QuantReLU in order (after each conv and hidden
        dense layer); empty: ``a_bits`` everywhere.
    lstm_requant_input : bool
        lstm only. True: the QuantLSTM requantises its input with ``io_quant``, the quantiser
        of the hidden state h (``a_bits`` over [-1, 1): Brevitas' default for a first layer,
        and what checkpoints written before this field hold). False (default): the LSTM takes
        the input quantiser's output as it is (``in_bits`` over the data's range) and
        ``io_quant`` quantises only h; at 4 bits one 16-level grid on [-1, 1) cannot serve
        both a standardised input and h (measured on the 1-D signals set: 82 % vs 89 % float).
    """

    kind: str
    in_shape: tuple[int, ...]
    num_classes: int
    w_bits: int = 4
    a_bits: int = 4
    in_bits: int = 8
    channels: tuple[int, ...] = (16, 32)
    hidden: tuple[int, ...] = (64,)
    kernel_size: int = 3
    batchnorm: bool = False
    dropout: float = 0.2
    standardize: bool = False
    in_signed: bool = False
    in_range: float = 1.0
    quantize: bool = True
    source: str = ""
    layer_w_bits: tuple[int, ...] = ()
    layer_a_bits: tuple[int, ...] = ()
    lstm_requant_input: bool = False

    def __post_init__(self) -> None:
        if self.kind == USER_KIND:
            if not self.source:
                raise ConfigError("a user model config needs its source (file.py:function)")
        elif self.source:
            raise ConfigError(f"source {self.source!r} is only for kind {USER_KIND!r}")
        if self.kind not in MODEL_KINDS and self.kind != USER_KIND:
            raise ConfigError(
                f"unknown model {self.kind!r}; choose one of {', '.join(MODEL_KINDS)}"
            )
        for name in ("w_bits", "a_bits", "in_bits"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not MIN_BITS <= value <= MAX_BITS
            ):
                raise ConfigError(
                    f"{name.replace('_', '-')} = {value!r} is not supported; qnet trains with "
                    f"{MIN_BITS}..{MAX_BITS} bits"
                )
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "channels", tuple(int(v) for v in self.channels))
        object.__setattr__(self, "hidden", tuple(int(v) for v in self.hidden))
        if any(v < 1 for v in self.in_shape + self.channels + self.hidden):
            raise ConfigError(f"shapes and sizes must be positive: {self}")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.kernel_size, bool) or not isinstance(self.kernel_size, int):
            raise ConfigError(f"kernel-size must be a positive integer, got {self.kernel_size!r}")
        if self.kernel_size < 1:
            raise ConfigError(f"kernel-size must be a positive integer, got {self.kernel_size}")
        for name in ("standardize", "in_signed", "batchnorm", "quantize", "lstm_requant_input"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        rng = self.in_range
        if (
            isinstance(rng, bool)
            or not isinstance(rng, int | float)
            or not math.isfinite(rng)
            or rng <= 0
            or math.log2(rng) != round(math.log2(rng))
        ):
            raise ConfigError(f"in_range must be a power of two (e.g. 1, 4, 8), got {rng!r}")
        object.__setattr__(self, "in_range", float(rng))
        self._check_layer_bits()

    @property
    def n_weighted(self) -> int:
        """Weighted layers (convs, hidden dense layers, classifier) of a convnet or mlp."""
        convs = len(self.channels) if self.kind in ("convnet2d", "convnet1d") else 0
        return convs + len(self.hidden) + 1

    @property
    def n_activations(self) -> int:
        """QuantReLUs (one after each conv and hidden dense layer) of a convnet or mlp."""
        return self.n_weighted - 1

    def w_bits_at(self, index: int) -> int:
        """Weight bits of weighted layer ``index`` (``layer_w_bits`` or ``w_bits``)."""
        return self.layer_w_bits[index] if self.layer_w_bits else self.w_bits

    def a_bits_at(self, index: int) -> int:
        """Activation bits of QuantReLU ``index`` (``layer_a_bits`` or ``a_bits``)."""
        return self.layer_a_bits[index] if self.layer_a_bits else self.a_bits

    def _check_layer_bits(self) -> None:
        for name in ("layer_w_bits", "layer_a_bits"):
            values = getattr(self, name)
            if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
                raise ConfigError(f"{name} must be a list of bit widths, got {values!r}")
            values = tuple(values)
            object.__setattr__(self, name, values)
            if not values:
                continue
            if self.kind == "lstm":
                raise ConfigError(f"{name}: per-layer bits are for convnets and mlp, not lstm")
            want = self.n_weighted if name == "layer_w_bits" else self.n_activations
            if len(values) != want:
                raise ConfigError(
                    f"{name} has {len(values)} entries; this {self.kind} has {want} "
                    f"({'weighted layers' if name == 'layer_w_bits' else 'activations'})"
                )
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int) or not MIN_BITS <= v <= MAX_BITS:
                    raise ConfigError(
                        f"{name} = {values!r}: {v!r} is not supported; qnet trains with "
                        f"{MIN_BITS}..{MAX_BITS} bits"
                    )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON- and checkpoint-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"unknown model config keys {sorted(unknown)}; known: {sorted(known)}"
            )
        if data.get("kind") == "lstm" and "lstm_requant_input" not in data:
            # written before the field existed: the LSTM requantised its input with io_quant
            data = {**data, "lstm_requant_input": True}
        return cls(**data)
