"""``qnet.export``: everything that talks to QONNX, hls4ml, da4ml and the synthesis tools.

The main entry points are re-exported lazily (their modules import hls4ml, onnx, torch or
da4ml): :func:`to_hls4ml`, :func:`to_verilog`, :func:`build_rtl`, :func:`export_qonnx`,
:func:`execute_qonnx`, :func:`write_export_project`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "to_hls4ml",
    "to_verilog",
    "build_rtl",
    "export_qonnx",
    "execute_qonnx",
    "write_export_project",
]

_LAZY = {
    "to_hls4ml": "qnet.export.hls",
    "to_verilog": "qnet.export.verilog",
    "build_rtl": "qnet.export.verilog",
    "export_qonnx": "qnet.export.qonnx",
    "execute_qonnx": "qnet.export.qonnx",
    "write_export_project": "qnet.export.project",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qnet.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
