"""hls4ml extension layer for qnet's exact LSTM (``QnetLSTM``) and its ``lstm`` export handler.

hls4ml's stock LSTM cannot equal a fixed-point Brevitas ``QuantLSTM`` (one accumulator type
for everything, no gate quantiser, its own sigmoid/tanh tables over fixed ranges, the cell
state rounded once; see PITFALLS.md). This module registers a custom hls4ml layer whose HLS
template (``templates/nnet_qnet_lstm.h``) computes exactly what
:class:`qnet.hw.lstm.LSTM` describes: exact wide accumulators, the gate casts with
``AP_RND_CONV``/``AP_SAT``, table lookups indexed by the pre-activation bits, and the cell
state rounded three times. Weights, biases and tables are hls4ml weight variables, each with
the precision of its :class:`~qnet.hw.fixed.FixedType`.

Importing this module registers the layer, its templates and header with hls4ml's Vivado,
Vitis and VivadoAccelerator backends; the ``lstm`` handler in :mod:`qnet.export.hls_layers`
builds the layer with :func:`lstm_hls_layer`. Only ``io_parallel`` is supported.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from qnet.errors import UnsupportedLayerError
from qnet.hw.fixed import FixedType
from qnet.hw.lstm import LSTM

with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
    warnings.simplefilter("ignore")
    import hls4ml
    from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
    from hls4ml.model.attributes import Attribute
    from hls4ml.model.layers import Layer as HlsLayer
    from hls4ml.model.types import NamedType

__all__ = ["QnetLSTM", "HEADER", "lstm_hls_layer"]

#: The HLS header implementing the cell.
HEADER = Path(__file__).parent / "templates" / "nnet_qnet_lstm.h"

_WEIGHTS = [f"{p}{k}" for p in ("wi", "wh", "b", "table") for k in range(4)] + ["tanh_table"]
_TYPES = [f"{p}{k}" for p in ("acc", "pre") for k in range(4)] + ["cell"]


class QnetLSTM(HlsLayer):
    """hls4ml layer: qnet's exact quantised LSTM (see :mod:`qnet.export.hls_lstm`)."""

    _expected_attributes = [
        Attribute("n_timesteps"),
        Attribute("n_in"),
        Attribute("n_hidden"),
        Attribute("return_sequences", value_type=bool),
        Attribute("in_time_major", value_type=bool),
        Attribute("out_time_major", value_type=bool),
    ]

    def initialize(self) -> None:
        steps, hidden = self.get_attr("n_timesteps"), self.get_attr("n_hidden")
        shape = [hidden, steps] if not self.get_attr("out_time_major") else [steps, hidden]
        self.add_output_variable(shape if self.get_attr("return_sequences") else [hidden])
        for name in _WEIGHTS:
            precision, _ = self.model.config.get_precision(self, var=name)
            self.add_weights_variable(name=name, var_name=f"{name}_{{index}}", precision=precision)
        for name in _TYPES:
            precision, type_name = self.model.config.get_precision(self, var=name)
            self.set_attr(f"{name}_t", NamedType(f"{self.name}_{name}_t", precision))


_CONFIG = """struct config{index} {{
    static const unsigned n_timesteps = {n_timesteps};
    static const unsigned n_in = {n_in};
    static const unsigned n_hidden = {n_hidden};
    static const bool return_sequences = {return_sequences};
    static const bool in_time_major = {in_time_major};
    static const bool out_time_major = {out_time_major};
    static const unsigned reuse_factor = {reuse};
{typedefs}
    typedef {h_t} h_t;
    static const bool pre0_signed = {pre0_signed};
    static const bool pre1_signed = {pre1_signed};
    static const bool pre2_signed = {pre2_signed};
    static const bool pre3_signed = {pre3_signed};
    static const bool cell_signed = {cell_signed};
}};\n"""

_CALL = (
    "nnet::qnet_lstm<{input_t}, {output_t}, {config}>({input}, {output}, "
    + ", ".join("{" + n + "}" for n in _WEIGHTS)
    + ");"
)


def _signed(precision: Any) -> str:
    return "true" if precision.signed else "false"


class QnetLSTMConfigTemplate(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(QnetLSTM)
        self.template = _CONFIG

    def format(self, node: Any) -> str:
        params = self._default_config_params(node)
        typedefs = []
        for k in range(4):
            for prefix in ("wi", "wh", "b"):
                typedefs.append(
                    f"    typedef {node.get_weights(f'{prefix}{k}').type.name} {prefix}{k}_t;"
                )
            typedefs.append(f"    typedef {node.get_weights(f'table{k}').type.name} act{k}_t;")
        typedefs.append(f"    typedef {node.get_weights('tanh_table').type.name} tanhc_t;")
        for name in _TYPES:
            typedefs.append(f"    typedef {node.get_attr(f'{name}_t').name} {name}_t;")
        params["typedefs"] = "\n".join(typedefs)
        params["h_t"] = node.get_output_variable().type.name
        for k in range(4):
            params[f"pre{k}_signed"] = _signed(node.get_attr(f"pre{k}_t").precision)
        params["cell_signed"] = _signed(node.get_attr("cell_t").precision)
        return self.template.format(**params)


class QnetLSTMFunctionTemplate(FunctionCallTemplate):
    def __init__(self) -> None:
        super().__init__(QnetLSTM, include_header=["nnet_utils/nnet_qnet_lstm.h"])
        self.template = _CALL

    def format(self, node: Any) -> str:
        params = self._default_function_params(node)
        for name in _WEIGHTS:
            params[name] = node.get_weights(name).name
        return self.template.format(**params)


def _register_with_hls4ml() -> None:
    hls4ml.model.layers.register_layer("QnetLSTM", QnetLSTM)
    for backend_name in ("Vivado", "Vitis", "VivadoAccelerator"):
        backend = hls4ml.backends.get_backend(backend_name)
        backend.register_template(QnetLSTMConfigTemplate)
        backend.register_template(QnetLSTMFunctionTemplate)
        backend.register_source(HEADER)


def lstm_hls_layer(
    layer: LSTM, in_type: FixedType, in_time_major: bool, out_time_major: bool
) -> tuple[dict[str, Any], dict[str, FixedType]]:
    """The hls4ml layer dict (``class_name`` ``QnetLSTM``) and its precisions for one LSTM.

    ``in_time_major``: the input is laid out (T, F) (else (F, T)); likewise the output.
    """
    fracs = layer.acc_frac(in_type)
    attrs: dict[str, Any] = {
        "class_name": "QnetLSTM",
        "n_timesteps": None,
        "n_in": layer.input_size,
        "n_hidden": layer.hidden_size,
        "return_sequences": layer.return_sequences,
        "in_time_major": in_time_major,
        "out_time_major": out_time_major,
    }
    precision: dict[str, FixedType] = {"result": layer.out_type}
    for k in range(4):
        precision[f"wi{k}"] = layer.input_weight_types[k]
        precision[f"wh{k}"] = layer.hidden_weight_types[k]
        attrs[f"wi{k}_data"] = layer.input_weight_types[k].from_int(layer.input_weight[k])
        attrs[f"wh{k}_data"] = layer.hidden_weight_types[k].from_int(layer.hidden_weight[k])
        if layer.bias is not None:
            assert layer.bias_types is not None
            precision[f"b{k}"] = layer.bias_types[k]
            attrs[f"b{k}_data"] = layer.bias_types[k].from_int(layer.bias[k])
        else:
            precision[f"b{k}"] = FixedType(1, 1)
            attrs[f"b{k}_data"] = np.zeros(layer.hidden_size)
        if layer.acc_types[k].frac < fracs[k]:
            raise UnsupportedLayerError(
                f"layer {layer.name!r}: acc_types[{k}] {layer.acc_types[k]} is too narrow for "
                f"the products ({fracs[k]} fractional bits needed)"
            )
        precision[f"acc{k}"] = layer.acc_types[k]
        precision[f"pre{k}"] = layer.gate_types[k]
        precision[f"table{k}"] = layer.act_types[k]
        attrs[f"table{k}_data"] = layer.act_types[k].from_int(layer.gate_tables[k])
    precision["cell"] = layer.cell_type
    precision["tanh_table"] = layer.tanh_type
    attrs["tanh_table_data"] = layer.tanh_type.from_int(layer.tanh_table)
    return attrs, precision


_register_with_hls4ml()
