"""``qnet.hw``: hardware semantics, with no torch import.

Fixed-point formats (:class:`FixedType`), the hardware graph (:class:`HwGraph` and its
layers), the bit-accurate simulator and the resource/latency estimator. Loads on a machine
with only NumPy, so everything is imported eagerly: ``qnet.hw.simulate`` and
``qnet.hw.estimate`` are the functions whatever was imported before (their modules are
``qnet.hw.simulator`` and ``qnet.hw.estimator``).

This is also the one place that fills the layer-kind registries: layer kinds outside
``hw/layers.py`` (the LSTM) register their layer class and simulator when their module is
imported, and they are imported here, explicitly. Importing any ``qnet.hw.*`` module runs
this file first, so the registries are complete whatever the caller imported.
"""

from __future__ import annotations

from qnet.hw import cost_lstm  # noqa: F401  (registers the LSTM's hls and rtl costs)
from qnet.hw.boards import load_board
from qnet.hw.estimator import estimate
from qnet.hw.fixed import FixedType, Overflow, Rounding
from qnet.hw.graph import HwGraph
from qnet.hw.lstm import LSTM
from qnet.hw.options import BuildOptions
from qnet.hw.simulator import simulate, simulate_iter

__all__ = [
    "FixedType",
    "Rounding",
    "Overflow",
    "HwGraph",
    "LSTM",
    "simulate",
    "simulate_iter",
    "estimate",
    "load_board",
    "BuildOptions",
]
