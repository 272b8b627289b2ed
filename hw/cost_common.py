"""What both cost models return per layer, and the weight-digit statistics they share.

:class:`LayerEstimate` is one layer's row of an :class:`~qnet.hw.estimator.Estimate`; the
hls4ml model (:mod:`qnet.hw.cost_hls`) and the RTL model (:mod:`qnet.hw.cost_rtl`) both
build it. The digit helpers count what constant multiplications cost: the nonzero digits of
a weight's canonical signed-digit form, its bit length and its odd part.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from qnet.hw.boards import resource_dict

__all__ = ["LayerEstimate"]


@dataclass(frozen=True)
class LayerEstimate:
    """Estimated cost of one layer.

    ``mults`` counts multiplications per inference; ``dsp_mults`` / ``lut_mults`` /
    ``free_mults`` count multiplier instances in DSPs, in LUTs, and products that need no
    multiplier (zero or power-of-two weights).
    """

    name: str
    kind: str
    mults: int = 0
    dsp_mults: int = 0
    lut_mults: int = 0
    free_mults: int = 0
    lut: int = 0
    ff: int = 0
    dsp: int = 0
    bram_18k: int = 0
    uram: int = 0
    latency_cycles: int = 0
    ii_cycles: int = 1
    note: str = ""
    carry: int = 0

    def resources(self) -> dict[str, int]:
        """``{"LUT": .., "FF": .., "DSP": .., "BRAM_18K": .., "URAM": ..}``."""
        return resource_dict(self)


def _csd_nonzeros(values: np.ndarray) -> np.ndarray:
    """Nonzero digits of the canonical signed-digit form of each |value| (vectorised)."""
    x = np.abs(values.astype(np.int64))
    count = np.zeros_like(x)
    while np.any(x):
        odd = (x & 1) == 1
        # digit +1 when x % 4 == 1, -1 when x % 4 == 3
        digit = np.where(odd, 2 - (x & 3), 0)
        count += odd
        x = (x - digit) >> 1
    return count


def _bit_length(values: np.ndarray) -> np.ndarray:
    x = np.abs(values.astype(np.int64))
    out = np.zeros_like(x)
    nz = x > 0
    out[nz] = np.floor(np.log2(x[nz])).astype(np.int64) + 1
    return out


def _odd_part(values: np.ndarray) -> np.ndarray:
    x = np.abs(values.astype(np.int64))
    nz = x > 0
    low = np.zeros_like(x)
    low[nz] = x[nz] & -x[nz]
    out = np.zeros_like(x)
    out[nz] = x[nz] // low[nz]
    return out


def _with(row: LayerEstimate, **changes: Any) -> LayerEstimate:
    return replace(row, **changes)
