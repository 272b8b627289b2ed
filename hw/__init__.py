"""``qnet.hw``: hardware semantics, with no torch import.

Fixed-point formats (:class:`FixedType`), the hardware graph (:class:`HwGraph` and its
layers), the bit-accurate simulator and the resource/latency estimator. Loads on a machine
with only NumPy, so everything is imported eagerly: ``qnet.hw.simulate`` and
``qnet.hw.estimate`` are the functions whatever was imported before (their modules are
``qnet.hw.simulator`` and ``qnet.hw.estimator``).
"""

from __future__ import annotations

from qnet.hw.boards import load_board
from qnet.hw.estimator import estimate
from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import HwGraph
from qnet.hw.simulator import simulate

__all__ = ["FixedType", "Rounding", "Overflow", "HwGraph", "simulate", "estimate", "load_board"]
