"""qnet: quantised neural networks from Brevitas training to bit-exact FPGA hardware.

The public API is imported lazily so that ``import qnet`` (and ``qnet --help``) does not
import torch, brevitas or hls4ml.
"""

from __future__ import annotations

import importlib
from typing import Any

from qnet.errors import (
    BoardError,
    CheckpointError,
    ConfigError,
    DataError,
    FormatError,
    OutputExistsError,
    QnetError,
    ToolNotFoundError,
    UnsupportedLayerError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "lower",
    "simulate",
    "simulate_iter",
    "estimate",
    "verify",
    "to_hls4ml",
    "to_verilog",
    "fit",
    "FixedType",
    "HwGraph",
    "QnetError",
    "FormatError",
    "DataError",
    "UnsupportedLayerError",
    "BoardError",
    "ToolNotFoundError",
    "CheckpointError",
    "ConfigError",
    "OutputExistsError",
    "VerificationError",
]

# name -> module that defines it; imported on first access (PEP 562). No module of this
# package is named like one of these functions, so importing a submodule never hides one.
_LAZY = {
    "lower": "qnet.lowering",
    "simulate": "qnet.hw.simulator",
    "simulate_iter": "qnet.hw.simulator",
    "estimate": "qnet.hw.estimator",
    "verify": "qnet.verification",
    "to_hls4ml": "qnet.export.hls",
    "to_verilog": "qnet.export.verilog",
    "fit": "qnet.fitting",
    "FixedType": "qnet.hw.fixed",
    "HwGraph": "qnet.hw.graph",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qnet' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
