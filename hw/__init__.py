"""``qnet.hw``: hardware semantics, with no torch import.

Fixed-point formats (:class:`FixedType`), the hardware graph (:class:`HwGraph` and its
layers), the bit-accurate simulator and the resource/latency estimator. Loads on a machine
with only NumPy.
"""

from __future__ import annotations

import importlib
from typing import Any

from qnet.hw.fixed import FixedType, Overflow, Rounding

__all__ = [
    "FixedType",
    "Rounding",
    "Overflow",
    "HwGraph",
    "simulate",
    "simulate_iter",
    "estimate",
    "load_board",
]

_LAZY = {
    "HwGraph": "qnet.hw.graph",
    "simulate": "qnet.hw.simulate",
    "simulate_iter": "qnet.hw.simulate",
    "estimate": "qnet.hw.estimate",
    "load_board": "qnet.hw.boards",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qnet.hw' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
