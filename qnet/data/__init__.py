"""``qnet.data``: data sets for training and evaluation.

* :mod:`qnet.data.datasets`: :func:`load_dataset` (built-in digits and user ``.npz`` files,
  laid out for a model kind, with a validation split and the input preprocessing), the
  :class:`Dataset` it returns, and :func:`checkpoint_split` (a checkpoint's own data).
* :mod:`qnet.data.stream`: splits bigger than memory, read batch by batch from a
  memory-mapped ``.npz`` (:func:`open_split`, :func:`checkpoint_stream`, :func:`npz_member`).
* :mod:`qnet.data.synthetic`: generated data sets (:func:`synthetic_signals`,
  :func:`synthetic_sequences`).
"""

from __future__ import annotations

from qnet.data.datasets import (
    BUILTIN_DATASETS,
    DEFAULT_VAL_FRACTION,
    INPUT_NORMS,
    INPUT_RANGE_PERCENTILE,
    SPLITS,
    TEST_FRACTION,
    Dataset,
    checkpoint_split,
    load_dataset,
)
from qnet.data.stream import SplitStream, checkpoint_stream, npz_member, open_split
from qnet.data.synthetic import synthetic_sequences, synthetic_signals

__all__ = [
    "Dataset",
    "load_dataset",
    "checkpoint_split",
    "BUILTIN_DATASETS",
    "SPLITS",
    "TEST_FRACTION",
    "DEFAULT_VAL_FRACTION",
    "INPUT_NORMS",
    "INPUT_RANGE_PERCENTILE",
    "synthetic_signals",
    "synthetic_sequences",
    "npz_member",
    "SplitStream",
    "open_split",
    "checkpoint_stream",
]
