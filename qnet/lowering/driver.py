"""The lowering driver: capture, then hand each record to its handler, then prune."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from qnet.errors import InternalError, UnsupportedLayerError
from qnet.hw.graph import HwGraph, Input, Layer
from qnet.lowering.capture import Recorder, flat_objects
from qnet.lowering.context import (
    FUNCTION_LOWERERS,
    LOWERERS,
    LowerContext,
    TensorRef,
    supported_modules,
)
from qnet.lowering.host import host_ops_of_pending
from qnet.lowering.requant import output_affine

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from torch import nn

__all__ = ["lower"]


def _example_tensor(example_input: Any) -> torch.Tensor:
    x = torch.as_tensor(
        np.asarray(example_input) if not isinstance(example_input, torch.Tensor) else example_input
    )
    return x.float()


def lower(model: nn.Module, example_input: Any) -> HwGraph:
    """Lower a Brevitas model to an exact :class:`HwGraph`.

    Parameters
    ----------
    model : torch.nn.Module
        A Brevitas model built from supported layers (see :data:`LOWERERS`); it is put in eval
        mode.
    example_input : tensor or array
        One batch (N, *in_shape) of float input; only shapes matter (N = 1 is enough).

    Returns
    -------
    HwGraph

    Raises
    ------
    UnsupportedLayerError
        For a module, function or quantiser with no exact lowering, naming the module path,
        its class and what would be accepted.
    """
    model.eval()
    x = _example_tensor(example_input)
    if x.ndim < 2:
        x = x[None]
    recorder = Recorder(model)
    recorder.mark_known(x)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            with recorder:
                output = model(x)
    finally:
        recorder.remove()
    ctx = LowerContext()
    ctx.bind(x, TensorRef(None, None, tuple(x.shape[1:])))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        for rec in recorder.records:
            inputs = tuple(
                ref
                for ref in (ctx.lookup(o) for o in flat_objects((rec.args, rec.kwargs)))
                if ref is not None
            )
            call = dataclasses.replace(rec, inputs=inputs)
            if call.module is not None:
                handler = LOWERERS.get(type(call.module))
                if handler is None:
                    raise ctx.unsupported(
                        call, "no exact lowering for this module", supported_modules()
                    )
                result = handler(ctx, call)
            else:
                handler = FUNCTION_LOWERERS.get(call.target)
                if handler is None:
                    result = TensorRef(
                        None,
                        None,
                        (),
                        error=f"torch function {call.class_name} at {call.path} has no exact lowering "
                        "(accepted in forward(): shape ops, elementwise float ops with constants, "
                        "+ of two quantised tensors)",
                    )
                else:
                    result = handler(ctx, call)
            if result is None:
                result = ctx.input(call, 0)
            ctx.bind(call.output, result)
    out_obj = output[0] if isinstance(output, tuple | list) else output
    out_ref = ctx.lookup(out_obj)
    if out_ref is None or out_ref.error is not None or out_ref.layer is None:
        why = (
            out_ref.error
            if out_ref is not None and out_ref.error
            else "it is not produced by a lowered layer"
        )
        raise UnsupportedLayerError(f"the model output cannot be lowered: {why}")
    with torch.no_grad():
        post = host_ops_of_pending(ctx, out_ref.pending)
    if out_ref.is_float_scaled:
        # float scale / float bias of the last layer: the host applies it to the integers
        affine = output_affine(out_ref)
        post = (affine, *post)
        ctx.meta["float_output"] = {
            "layer": out_ref.layer,
            "scale": [float(v) for v in np.asarray(affine.const).reshape(-1)],
            "offset": [float(v) for v in np.asarray(affine.const2).reshape(-1)],
        }
    layers = _prune(ctx.layers, out_ref.layer)
    meta = dict(ctx.meta)
    meta["float32_inexact"] = [
        n for n in meta["float32_inexact"] if any(layer.name == n for layer in layers)
    ]
    meta["source"] = type(model).__name__
    return HwGraph(tuple(layers), meta, tuple(ctx.pre), post)


def _prune(layers: list[Layer], output: str) -> list[Layer]:
    """Keep the ancestors of ``output`` (in order); ``output`` ends up last."""
    needed = {output}
    for layer in reversed(layers):
        if layer.name in needed:
            needed.update(layer.inputs)
    kept = [layer for layer in layers if layer.name in needed]
    if kept[-1].name != output:
        raise InternalError(f"output layer {output!r} is not last")
    if not isinstance(kept[0], Input) or sum(isinstance(layer, Input) for layer in kept) != 1:
        raise UnsupportedLayerError(
            "the model must have exactly one input quantised by a QuantIdentity"
        )
    return kept
