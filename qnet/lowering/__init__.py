"""``qnet.lowering``: Brevitas model -> :class:`~qnet.hw.graph.HwGraph`, exactly.

How it works
------------
1. **Capture.** The model (eval mode) runs once on ``example_input`` under forward hooks and a
   :class:`torch.overrides.TorchFunctionMode`. Every call of a *unit* module (a module whose
   class has a registered lowering handler, or a leaf module) is recorded with the objects it
   received and returned; sub-modules of a unit are internal to it. Torch functions called
   outside units (``torch.flatten(x, 1)``, ``x + y`` on QuantTensors, ``x.value[:, -1]``) are
   recorded too when one of their arguments is a tensor produced by an earlier record.
   Records are in execution order, which is a topological order.
2. **Lowering.** Each record is handed to the handler registered for its module class (or
   torch function). Tensors are connected by object identity (a QuantTensor and its
   ``.value`` both resolve to the same :class:`TensorRef`).

Writing a handler (e.g. ``qnet/lowering/lstm.py`` for ``brevitas.nn.QuantLSTM``)
---------------------------------------------------------------------------------
::

    from qnet.lowering import Call, LowerContext, TensorRef, register_lowerer

    @register_lowerer(QuantLSTM)            # exact class match; duplicates raise ValueError
    def _lower_lstm(ctx: LowerContext, call: Call) -> TensorRef | None:
        x = ctx.quantised_input(call, 0)     # TensorRef of the first tensor argument
        ...                                  # read call.module, call.args, call.output
        layer = MyLstmLayer(name=ctx.name(call), inputs=(x.layer,), out_shape=...,
                            out_type=..., source=call.source, ...)
        ref = ctx.add(layer)                 # appends to the graph, returns its TensorRef
        ctx.bind(call.output[1][0], ref2)    # optional: bind extra output objects yourself
        return ref                           # bound to call.output (and call.output[0] /
                                             # .value when the output is a tuple/QuantTensor)

* ``Call`` fields: ``path`` (module path such as ``'features.3'``, or
  ``'<parent>:flatten#0'`` for torch functions), ``target`` (the module or the function),
  ``module`` (the module, or None), ``args``/``kwargs`` (objects recorded at run time, batch =
  example input), ``output`` (returned object), ``inputs`` (a ``TensorRef`` per tensor-like
  argument, in argument order), ``source`` (``'features.3: QuantConv2d'`` for messages).
* Return ``None`` for an identity (the output is bound to ``inputs[0]``, e.g. Dropout).
* Raise with ``ctx.unsupported(call, why, accepted)`` (an :class:`UnsupportedLayerError`
  naming the path, the class and what would be accepted).
* Helpers (:mod:`qnet.lowering.quant`, shared by every handler): :func:`fixed_type_of`
  (QuantTensor + quantiser proxy -> ``FixedType``), :func:`proxy_type` (quant proxy ->
  ``FixedType``),
  :func:`weight_mantissas` (per-tensor/per-channel power-of-two weights -> int64 mantissas
  and one ``FixedType``), :func:`acc_type_for` (exact accumulator type and its bound).
* Torch functions: ``@register_function_lowerer(torch.Tensor.__getitem__)`` with the same
  handler signature (``call.module`` is None, ``call.target`` the function).
* Float accumulators: a ``TensorRef`` whose ``pending`` holds float modules (BatchNorm, ReLU)
  not yet lowered; the next quantised activation turns them into a MultiThreshold.

Every accumulator whose bound reaches 2**24 lsb (where Brevitas' float32 arithmetic stops
being exact) is listed in ``graph.meta['float32_inexact']``; ``graph.meta['acc_bounds']`` gives
each weighted layer's bound.

Layout
------
``context`` (records, registries, :class:`LowerContext`), ``capture`` (hooks and
TorchFunctionMode), ``quant`` (quantiser -> FixedType helpers), ``layers`` (built-in handlers),
``lstm`` (QuantLSTM), ``merge`` (``torch.cat``), ``pooling`` (average pooling over any window, global
pooling, TruncAvgPool2d), ``driver`` (:func:`lower`). The handler modules register themselves when
imported; this package imports them, and is the only place that does.
"""

from __future__ import annotations

# The handler modules fill LOWERERS / FUNCTION_LOWERERS when imported: this is the one place
# that imports them.
from qnet.lowering import layers as _layers  # noqa: F401
from qnet.lowering import lstm as _lstm  # noqa: F401
from qnet.lowering import merge as _merge  # noqa: F401
from qnet.lowering import pooling as _pooling  # noqa: F401
from qnet.lowering.context import (
    FLOAT32_EXACT_LIMIT,
    FUNCTION_LOWERERS,
    LOWERERS,
    Call,
    LowerContext,
    LowerFn,
    TensorRef,
    register_function_lowerer,
    register_lowerer,
)
from qnet.lowering.driver import lower
from qnet.lowering.quant import (
    acc_type_for,
    fixed_type_of,
    proxy_type,
    weight_mantissas,
)

__all__ = [
    "lower",
    "Call",
    "TensorRef",
    "LowerContext",
    "LowerFn",
    "LOWERERS",
    "FUNCTION_LOWERERS",
    "register_lowerer",
    "register_function_lowerer",
    "fixed_type_of",
    "proxy_type",
    "weight_mantissas",
    "acc_type_for",
    "FLOAT32_EXACT_LIMIT",
]
