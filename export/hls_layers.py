"""The hls4ml export handler of every HwGraph layer kind (registered on import).

One handler per kind (:func:`~qnet.export.hls_base.register_hls_handler`): input, quant, relu,
flatten, dense, conv, maxpool, avgpool, add, multithreshold (extension layer ``QnetThreshold``,
:mod:`qnet.export.hls_threshold`) and lstm (extension layer ``QnetLSTM``,
:mod:`qnet.export.hls_lstm`). Importing this module fills
:data:`~qnet.export.hls_base.HLS_HANDLERS`; :mod:`qnet.export.hls` does so.

Layout. A convolution's weights are transposed to hls4ml's channels-last order, and a
``Flatten`` is free: the next ``Dense`` gets its input columns permuted so that it reads the
channels-last memory order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qnet.errors import UnsupportedLayerError
from qnet.export.hls_base import HlsContext, _cl_shape, register_hls_handler
from qnet.export.hls_lstm import lstm_hls_layer
from qnet.export.hls_threshold import threshold_hls_layer
from qnet.hw.fixed import FixedType
from qnet.hw.graph import (
    Add,
    AvgPool,
    Concat,
    Conv,
    Dense,
    Flatten,
    HwGraph,
    Input,
    Layer,
    MaxPool,
    MultiThreshold,
    Quant,
    ReLU,
)
from qnet.hw.lstm import LSTM

__all__: list[str] = []


@register_hls_handler("input")
def _input(layer: Input, graph: HwGraph, ctx: HlsContext) -> None:
    ctx.add(
        {"class_name": "InputLayer", "input_shape": _cl_shape(layer.out_shape)},
        hw_name=layer.name,
        inputs=None,
        precision={"result": layer.out_type},
        cf_shape=layer.out_shape,
    )


def _cast_layer(layer: Layer, ctx: HlsContext, activation: str) -> None:
    ctx.add(
        {"class_name": "Activation", "activation": activation},
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision={"result": layer.out_type},
        cf_shape=ctx.in_cf_shape(layer),
    )


@register_hls_handler("quant")
def _quant(layer: Quant, graph: HwGraph, ctx: HlsContext) -> None:
    # A linear activation is ``res = data`` with res_T = out_type: the ap_fixed cast.
    _cast_layer(layer, ctx, "linear")


@register_hls_handler("relu")
def _relu(layer: ReLU, graph: HwGraph, ctx: HlsContext) -> None:
    _cast_layer(layer, ctx, "relu")


@register_hls_handler("flatten")
def _flatten(layer: Flatten, graph: HwGraph, ctx: HlsContext) -> None:
    in_type = graph.in_type(layer)
    if layer.out_type != in_type:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} ({layer.source or 'flatten'}): a flatten that changes the type "
            f"({in_type} -> {layer.out_type}) is not supported by the hls4ml export"
        )
    in_cf = ctx.in_cf_shape(layer)
    if len(in_cf) <= 1:
        ctx.alias(layer.name, layer.inputs[0], in_cf)
        return
    # A reshape in hls4ml (free in hardware): the data stays in channels-last order, so the
    # tensor keeps the channels-first logical shape of its input; the next Dense permutes
    # its columns to read it. With every spatial size 1 (a global pool) both orders agree.
    flat = all(s == 1 for s in in_cf[1:])
    ctx.add(
        {"class_name": "Reshape", "target_shape": [int(np.prod(in_cf))]},
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision={"result": layer.out_type},
        cf_shape=(int(np.prod(in_cf)),) if flat else in_cf,
    )


def _weighted_precision(layer: Dense | Conv) -> dict[str, FixedType]:
    prec: dict[str, FixedType] = {
        "weight": layer.weight_type,
        "accum": layer.acc_type,
        "result": layer.out_type,
    }
    prec["bias"] = layer.bias_type if layer.bias_type is not None else FixedType(1, 1, signed=False)
    return prec


def _bias_values(layer: Dense | Conv) -> np.ndarray:
    if layer.bias is None:
        return np.zeros(layer.out_features)
    assert layer.bias_type is not None
    return layer.bias_type.from_int(layer.bias)


@register_hls_handler("dense")
def _dense(layer: Dense, graph: HwGraph, ctx: HlsContext) -> None:
    in_cf = ctx.in_cf_shape(layer)
    weight = layer.weight  # (out, in) in the HwGraph's channels-first flatten order
    if len(in_cf) > 1:
        if int(np.prod(in_cf)) != layer.in_features:
            raise UnsupportedLayerError(
                f"layer {layer.name!r}: reads a {in_cf} tensor but has {layer.in_features} inputs"
            )
        # hls4ml's tensor is (*spatial, C) in memory: permute the columns to that order.
        weight = np.moveaxis(weight.reshape(layer.out_features, *in_cf), 1, -1).reshape(
            layer.out_features, -1
        )
    ctx.add(
        {
            "class_name": "Dense",
            "n_in": layer.in_features,
            "n_out": layer.out_features,
            "weight_data": layer.weight_type.from_int(weight.T.copy()),
            "bias_data": _bias_values(layer),
            "use_bias": layer.bias is not None,
        },
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision=_weighted_precision(layer),
        cf_shape=layer.out_shape,
        config={"ReuseFactor": ctx.reuse_for(layer)},
    )


@register_hls_handler("conv")
def _conv(layer: Conv, graph: HwGraph, ctx: HlsContext) -> None:
    # hls4ml's Vivado/Vitis convolution kernels ignore ``dilation`` and take groups only as
    # DepthwiseConv (one channel per group): a dilated kernel goes out with zero taps, a
    # depthwise one as DepthwiseConv1D/2D, any other grouped one as the equivalent plain
    # convolution (block-diagonal weights). Each is exactly the same map.
    layer = layer.undilated()
    depthwise = layer.is_depthwise
    if not depthwise:
        layer = layer.dense_equivalent()
    in_shape = graph.in_shape(layer)
    if ctx.in_cf_shape(layer) != in_shape:
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: convolution after a flatten is not supported"
        )
    attrs: dict[str, Any] = {
        "data_format": "channels_last",
        "n_chan": layer.in_channels,
        "n_filt": layer.out_features,
        "bias_data": _bias_values(layer),
        "dilation": 1,
    }
    # keras layout (*k, in, out) from (out, in, *k); depthwise: (*k, channels, 1)
    perm = tuple(range(2, 2 + layer.dims)) + ((0, 1) if depthwise else (1, 0))
    kernel = layer.weight_type.from_int(layer.weight.transpose(perm).copy())
    if depthwise:
        attrs.update(depthwise_data=kernel, depth_multiplier=1)
    else:
        attrs.update(weight_data=kernel)
    prefix = "Depthwise" if depthwise else ""
    if layer.dims == 1:
        attrs.update(
            class_name=f"{prefix}Conv1D",
            in_width=in_shape[1],
            out_width=layer.out_shape[1],
            filt_width=layer.kernel[0],
            stride_width=layer.stride[0],
            pad_left=layer.padding[0],
            pad_right=layer.padding[0],
        )
    else:
        attrs.update(
            class_name=f"{prefix}Conv2D",
            in_height=in_shape[1],
            in_width=in_shape[2],
            out_height=layer.out_shape[1],
            out_width=layer.out_shape[2],
            filt_height=layer.kernel[0],
            filt_width=layer.kernel[1],
            stride_height=layer.stride[0],
            stride_width=layer.stride[1],
            pad_top=layer.padding[0],
            pad_bottom=layer.padding[0],
            pad_left=layer.padding[1],
            pad_right=layer.padding[1],
        )
    ctx.add(
        attrs,
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision=_weighted_precision(layer),
        cf_shape=layer.out_shape,
        config={"ReuseFactor": ctx.reuse_for(layer)},
    )


def _pool(
    layer: MaxPool | AvgPool, graph: HwGraph, ctx: HlsContext, op: str, accum: FixedType
) -> None:
    in_shape = graph.in_shape(layer)
    dims = len(layer.kernel)
    attrs: dict[str, Any] = {
        "data_format": "channels_last",
        "n_filt": in_shape[0],
        "count_pad": False,
    }
    if dims == 1:
        attrs.update(
            class_name=f"{op}Pooling1D",
            n_in=in_shape[1],
            n_out=layer.out_shape[1],
            pool_width=layer.kernel[0],
            stride_width=layer.stride[0],
            pad_left=0,
            pad_right=0,
        )
    elif dims == 2:
        attrs.update(
            class_name=f"{op}Pooling2D",
            in_height=in_shape[1],
            in_width=in_shape[2],
            out_height=layer.out_shape[1],
            out_width=layer.out_shape[2],
            pool_height=layer.kernel[0],
            pool_width=layer.kernel[1],
            stride_height=layer.stride[0],
            stride_width=layer.stride[1],
            pad_top=0,
            pad_bottom=0,
            pad_left=0,
            pad_right=0,
        )
    else:
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: {dims}-D pooling is not supported (1-D, 2-D)"
        )
    ctx.add(
        attrs,
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision={"result": layer.out_type, "accum": accum},
        cf_shape=layer.out_shape,
    )


@register_hls_handler("maxpool")
def _maxpool(layer: MaxPool, graph: HwGraph, ctx: HlsContext) -> None:
    _pool(layer, graph, ctx, "Max", graph.in_type(layer))


@register_hls_handler("avgpool")
def _avgpool(layer: AvgPool, graph: HwGraph, ctx: HlsContext) -> None:
    # hls4ml: acc = sum (in accum_t); acc /= n; res = acc. With accum_t holding the sum exactly
    # and log2(n) more fractional bits, the division by the power of two n is exact, and the
    # only rounding is the final cast to out_type, as in the simulator.
    in_type = graph.in_type(layer)
    n = int(np.prod(layer.kernel))
    log2n = n.bit_length() - 1
    accum = FixedType(in_type.width + 2 * log2n + 1, in_type.integer + log2n + 1, signed=True)
    _pool(layer, graph, ctx, "Average", accum)


@register_hls_handler("add")
def _add(layer: Add, graph: HwGraph, ctx: HlsContext) -> None:
    if ctx.in_cf_shape(layer, 0) != ctx.in_cf_shape(layer, 1):
        raise UnsupportedLayerError(f"layer {layer.name!r}: adds tensors of different layouts")
    ctx.add(
        {"class_name": "Add", "op": "add"},
        hw_name=layer.name,
        inputs=[ctx.input_of(layer, 0), ctx.input_of(layer, 1)],
        precision={"result": layer.out_type},
        cf_shape=ctx.in_cf_shape(layer),
    )


@register_hls_handler("concat")
def _concat(layer: Concat, graph: HwGraph, ctx: HlsContext) -> None:
    for i in range(len(layer.inputs)):
        if ctx.in_cf_shape(layer, i) != graph.in_shape(layer, i):
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({layer.source or 'concat'}): concatenating the output "
                "of a flatten is not supported by the hls4ml export"
            )
    # hls4ml's Concatenate takes two inputs: chain them. Its axis counts the batch (keras):
    # the channels are last (-1), a spatial axis a of the channels-first shape is a.
    dims = len(layer.out_shape)
    axis = -1 if layer.axis == 0 or dims == 1 else layer.axis
    name = ctx.input_of(layer, 0)
    cf = list(ctx.in_cf_shape(layer, 0))
    for i in range(1, len(layer.inputs)):
        cf[layer.axis] += graph.in_shape(layer, i)[layer.axis]
        last = i == len(layer.inputs) - 1
        name = ctx.add(
            {"class_name": "Concatenate", "op": f"concatenate{dims}d", "axis": axis},
            hw_name=layer.name if last else None,
            inputs=[name, ctx.input_of(layer, i)],
            precision={"result": layer.out_type},
            cf_shape=tuple(cf) if last else None,
            name=None if last else f"{layer.name}_part{i}",
        )


@register_hls_handler("multithreshold")
def _multithreshold(layer: MultiThreshold, graph: HwGraph, ctx: HlsContext) -> None:
    in_cf = ctx.in_cf_shape(layer)
    attrs, precision = threshold_hls_layer(layer, graph.in_type(layer), in_cf)
    ctx.add(
        attrs,
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision=precision,
        cf_shape=in_cf,
    )


@register_hls_handler("lstm")
def _lstm(layer: LSTM, graph: HwGraph, ctx: HlsContext) -> None:
    if ctx.io_type != "io_parallel":
        raise UnsupportedLayerError(
            f"layer {layer.name!r} ({layer.source or 'lstm'}): the LSTM export supports "
            f"io_type='io_parallel' only, got {ctx.io_type!r}"
        )
    in_cf = ctx.in_cf_shape(layer)
    in_shape = graph.in_shape(layer)
    if len(in_cf) != 2 or tuple(in_cf) != tuple(in_shape):
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: the LSTM input must be a (T, F) sequence, got {in_cf}"
        )
    # a (C, W) tensor is laid out channels last, (W, C): for (T, F) that is (F, T).
    attrs, precision = lstm_hls_layer(
        layer, graph.in_type(layer), in_time_major=False, out_time_major=False
    )
    attrs["n_timesteps"] = int(in_shape[0])
    ctx.add(
        attrs,
        hw_name=layer.name,
        inputs=[ctx.input_of(layer)],
        precision=precision,
        cf_shape=layer.out_shape,
    )
