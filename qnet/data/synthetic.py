"""Generated data sets (no download): 1-D signals and long sequences, as ``.npz`` arrays.

Each function returns the arrays of an ``.npz`` (``x_train``, ``y_train``, ``x_test``,
``y_test``) that :func:`qnet.data.load_dataset` accepts once saved; the benchmarks and tests
use them as data nobody tuned qnet on.
"""

from __future__ import annotations

import numpy as np

__all__ = ["synthetic_signals", "synthetic_sequences"]


def synthetic_signals(
    n_train: int = 4000, n_test: int = 1000, length: int = 40, num_classes: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    """A 1-D signal classification set (the arrays of an ``.npz``), generated, not downloaded.

    Each class is a template (two sinusoids of class-specific frequency, phase and amplitude);
    a sample is its template shifted by -3..3 steps and scaled by 0.7..1.3, plus Gaussian noise,
    normalised to ~N(0, 1) overall; 1 % of the values are replaced by outliers of +-3..5.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length) / length
    freqs = rng.uniform(1.0, 5.0, size=(num_classes, 2))
    phases = rng.uniform(0, 2 * np.pi, size=(num_classes, 2))
    amps = rng.uniform(0.5, 1.0, size=(num_classes, 2))
    templates = (amps[:, :1] * np.sin(2 * np.pi * freqs[:, :1] * t + phases[:, :1])) + (
        amps[:, 1:] * np.sin(2 * np.pi * freqs[:, 1:] * t + phases[:, 1:])
    )
    n = n_train + n_test
    y = rng.integers(0, num_classes, size=n)
    shift = rng.integers(-3, 4, size=n)
    gain = rng.uniform(0.7, 1.3, size=n)
    x = np.stack([np.roll(templates[c], s) for c, s in zip(y, shift, strict=True)]) * gain[:, None]
    x = x + rng.normal(0, 0.8, size=x.shape)
    x = x / x.std()
    out = rng.random(x.shape) < 0.01
    x[out] = rng.choice([-1.0, 1.0], size=int(out.sum())) * rng.uniform(3.0, 5.0, int(out.sum()))
    x = x.astype(np.float32)
    return {
        "x_train": x[:n_train],
        "y_train": y[:n_train],
        "x_test": x[n_train:],
        "y_test": y[n_train:],
    }


def synthetic_sequences(
    n_train: int = 4000, n_test: int = 1000, length: int = 64, num_classes: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    """A long-sequence classification set (1 feature, ``length`` steps) that needs memory.

    Each class is a code of 4 levels in {-1, 0, 1} (distinct in at least 2 places); a sample
    holds each level for a quarter of the sequence (boundaries jittered by +-2 steps), plus
    Gaussian noise (std 1), scaled by 3 and offset by 1 (raw data not centred, to exercise
    standardisation). A classifier reading the last hidden state must carry the first
    quarter's level for ~48 steps.
    """
    rng = np.random.default_rng(seed + 1000)
    levels = np.array(np.meshgrid(*[[-1.0, 0.0, 1.0]] * 4, indexing="ij")).reshape(4, -1).T
    codes: list[np.ndarray] = []
    for i in rng.permutation(len(levels)):
        if all((levels[i] != c).sum() >= 2 for c in codes):
            codes.append(levels[i])
        if len(codes) == num_classes:
            break
    n = n_train + n_test
    y = rng.integers(0, num_classes, size=n)
    quarter = length // 4
    x = rng.normal(0, 1.0, size=(n, length))
    for i in range(n):
        cuts = [0] + [q * quarter + int(rng.integers(-2, 3)) for q in (1, 2, 3)] + [length]
        for q in range(4):
            x[i, cuts[q] : cuts[q + 1]] += codes[y[i]][q]
    x = (3.0 * x + 1.0).astype(np.float32)
    return {
        "x_train": x[:n_train],
        "y_train": y[:n_train],
        "x_test": x[n_train:],
        "y_test": y[n_train:],
    }
