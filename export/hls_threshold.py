"""hls4ml extension layer for qnet's ``MultiThreshold`` (``QnetThreshold``).

BatchNorm followed by a quantised activation lowers to a per-channel monotone step function
(:class:`qnet.hw.graph.MultiThreshold`, as FINN's MultiThreshold). hls4ml has no such layer, so
this module registers one whose HLS template (``templates/nnet_qnet_threshold.h``) compares each
element with its channel's thresholds and counts: ``y = out_base + #{k : x >= t[c, k]}`` for an
increasing channel, ``out_base + #{k : x < t[c, k]}`` otherwise, ``y`` being the result's
mantissa. The thresholds are an hls4ml weight variable with the input's fractional bits (one
more integer bit, so that out-of-range thresholds clip to ``max + 1 lsb`` without changing any
count), hence every comparison is exact. ``io_parallel`` and ``io_stream`` are supported.

Importing this module registers the layer, its templates and header with hls4ml's Vivado,
Vitis and VivadoAccelerator backends; the ``multithreshold`` handler in
:mod:`qnet.export.hls_layers` builds the layer with :func:`threshold_hls_layer`.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from qnet.hw.fixed import FixedType
from qnet.hw.graph import MultiThreshold

with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
    warnings.simplefilter("ignore")
    import hls4ml
    from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
    from hls4ml.model.attributes import Attribute
    from hls4ml.model.layers import Layer as HlsLayer

__all__ = ["QnetThreshold", "HEADER", "threshold_type", "threshold_hls_layer"]

#: The HLS header implementing the layer.
HEADER = Path(__file__).parent / "templates" / "nnet_qnet_threshold.h"

#: Precision of the per-channel direction flags (1 = increasing).
_FLAG_TYPE = FixedType(1, 1, signed=False)


class QnetThreshold(HlsLayer):
    """hls4ml layer: qnet's MultiThreshold (see :mod:`qnet.export.hls_threshold`)."""

    _expected_attributes = [
        Attribute("n_in"),
        Attribute("n_chan"),
        Attribute("n_thresholds"),
        Attribute("out_base"),
    ]

    def initialize(self) -> None:
        # Same shape as the input (an elementwise layer), whatever hls4ml made of it.
        self.add_output_variable(list(self.get_input_variable().shape))
        for name in ("threshold", "increasing"):
            precision, _ = self.model.config.get_precision(self, var=name)
            self.add_weights_variable(name=name, var_name=f"{name}_{{index}}", precision=precision)


_CONFIG = """struct config{index} {{
    static const unsigned n_in = {n_in};
    static const unsigned n_chan = {n_chan};
    static const unsigned n_thresholds = {n_thresholds};
    static const unsigned count_bits = {count_bits};
    static const int out_base = {out_base};
    static const unsigned reuse_factor = {reuse};
    typedef {threshold_t} threshold_t;
    typedef {increasing_t} increasing_t;
}};\n"""

_CALL = (
    "nnet::qnet_threshold<{input_t}, {output_t}, {config}>"
    "({input}, {output}, {threshold}, {increasing});"
)


class QnetThresholdConfigTemplate(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(QnetThreshold)
        self.template = _CONFIG

    def format(self, node: Any) -> str:
        params = self._default_config_params(node)
        params["count_bits"] = max(1, int(node.get_attr("n_thresholds")).bit_length())
        params["threshold_t"] = node.get_weights("threshold").type.name
        params["increasing_t"] = node.get_weights("increasing").type.name
        return self.template.format(**params)


class QnetThresholdFunctionTemplate(FunctionCallTemplate):
    def __init__(self) -> None:
        super().__init__(QnetThreshold, include_header=["nnet_utils/nnet_qnet_threshold.h"])
        self.template = _CALL

    def format(self, node: Any) -> str:
        params = self._default_function_params(node)
        params["threshold"] = node.get_weights("threshold").name
        params["increasing"] = node.get_weights("increasing").name
        return self.template.format(**params)


def _register_with_hls4ml() -> None:
    hls4ml.model.layers.register_layer("QnetThreshold", QnetThreshold)
    for backend_name in ("Vivado", "Vitis", "VivadoAccelerator"):
        backend = hls4ml.backends.get_backend(backend_name)
        backend.register_template(QnetThresholdConfigTemplate)
        backend.register_template(QnetThresholdFunctionTemplate)
        backend.register_source(HEADER)


def threshold_type(in_type: FixedType) -> FixedType:
    """The thresholds' type: ``in_type``'s fractional bits, one more integer bit."""
    return FixedType(in_type.width + 1, in_type.integer + 1, signed=in_type.signed)


def threshold_hls_layer(
    layer: MultiThreshold, in_type: FixedType, layout_shape: tuple[int, ...]
) -> tuple[dict[str, Any], dict[str, FixedType]]:
    """The hls4ml layer dict (``class_name`` ``QnetThreshold``) and its precisions.

    Parameters
    ----------
    layer : MultiThreshold
    in_type : FixedType
        Type of the layer's input (the thresholds are mantissas of it).
    layout_shape : tuple of int
        Channels-first logical shape of the hls4ml input tensor, which hls4ml lays out
        channels last. Equal to ``layer.out_shape`` unless the input is a flattened tensor,
        in which case every element is its own channel and the thresholds are reordered to
        the memory order.

    Returns
    -------
    (dict, dict)
        The layer attributes and ``{"result", "threshold", "increasing"}`` precisions.
    """
    thr = np.asarray(layer.thresholds, dtype=np.int64)
    inc = np.asarray(layer.increasing, dtype=bool)
    layout_shape = tuple(int(s) for s in layout_shape)
    n_in = int(np.prod(layer.out_shape))
    if layout_shape == tuple(layer.out_shape):
        n_chan = int(layer.out_shape[0])
    else:
        # A flattened (N,) tensor stored in the channels-last order of ``layout_shape``:
        # channel = logical index, so list the thresholds in memory order.
        order = np.arange(n_in).reshape(layout_shape)
        if len(layout_shape) > 1:
            order = np.moveaxis(order, 0, -1)
        order = order.reshape(-1)
        thr, inc, n_chan = thr[order], inc[order], n_in
    # Out-of-range thresholds count the same when clipped to [min, max + 1 lsb] of the input.
    thr = np.clip(thr, in_type.int_min, in_type.int_max + 1)
    if thr.shape[1] == 0:
        # A constant layer: one threshold that never counts (no zero-sized C++ arrays).
        thr = np.where(inc, in_type.int_max + 1, in_type.int_min)[:, None]
    t_type = threshold_type(in_type)
    attrs: dict[str, Any] = {
        "class_name": "QnetThreshold",
        "n_in": n_in,
        "n_chan": n_chan,
        "n_thresholds": int(thr.shape[1]),
        "out_base": int(layer.out_base),
        "threshold_data": t_type.from_int(thr.reshape(-1)),
        "increasing_data": inc.astype(np.float64),
    }
    precision = {"result": layer.out_type, "threshold": t_type, "increasing": _FLAG_TYPE}
    return attrs, precision


_register_with_hls4ml()
