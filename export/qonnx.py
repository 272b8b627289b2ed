"""QONNX export of a Brevitas model and execution of the QONNX file with qonnx.

``export_qonnx`` writes the model as QONNX (``Quant`` nodes around standard ONNX operators),
runs qonnx's ``cleanup_model`` and writes the file atomically. ``execute_qonnx`` runs such a
file with qonnx's reference executor (``execute_onnx``), one exported batch at a time.

What was measured with torch 2.13, brevitas 0.13.4 and qonnx 1.0.0 (see
``tests/export/test_qonnx.py``):

* The zoo's ConvNet2d, ConvNet1d and MLP export and execute to exactly the values of
  ``qnet.simulate`` (``np.array_equal``), saturating inputs and rounding ties included.
  The graph stays channels-first; no channels-last conversion or ``GemmToMatMul`` is applied
  (hls4ml needs those, qonnx execution does not).
* Brevitas writes a Quant node's ``rounding_mode`` from the injector's stale
  ``float_to_int_impl_type``: a quantiser built with ``.let(float_to_int_impl=FloorSte)`` was
  exported as ROUND and every output differed. ``export_qonnx`` corrects the injector for the
  duration of the export (restored after). With that, 15 random architectures from
  ``tests/test_exactness.py`` (conv/BN/pool/floor/narrow quantisers) and both residual-add
  forms matched the simulator on every sample tried.
* Brevitas exports through the TorchScript exporter by default here (``exporter=
  "torchscript"``): it is ~10x faster than the dynamo exporter (0.1-0.4 s vs 1.4-4.9 s on the
  zoo models) and writes ``Flatten`` rather than a batch-fixed ``Reshape``.
* ``QuantLSTM`` has no executable QONNX form: the dynamo exporter fails inside
  ``torch.export`` ("'FakeTensor' object has no attribute 'value'") and the TorchScript
  exporter writes a ``QuantLSTMCell`` custom op that qonnx 1.0.0 neither implements nor can
  infer shapes for. ``export_qonnx`` therefore refuses models containing one with an
  :class:`~qnet.errors.UnsupportedLayerError`; the LSTM's exact reference is
  ``qnet.simulate`` (and the hls4ml extension layer in ``qnet.export.hls_lstm``).
* The exported graph has a fixed batch dimension of 1 (qonnx checks input shapes), and
  execution costs ~8-35 ms per sample on these models: ``execute_qonnx`` is a reference
  check, not a fast executor.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from qnet.errors import DataError, FormatError, UnsupportedLayerError
from qnet.hw.atomic import default_mode

__all__ = ["EXPORTERS", "export_qonnx", "execute_qonnx"]

EXPORTERS = ("torchscript", "dynamo")

# Brevitas module classes whose QONNX export qonnx cannot execute, and why.
_UNEXECUTABLE = {
    "QuantLSTM": (
        "Brevitas exports QuantLSTM to a 'QuantLSTMCell' custom op (TorchScript exporter) that "
        "qonnx 1.0.0 cannot infer shapes for or execute, and the dynamo exporter fails on it "
        "inside torch.export"
    ),
    "QuantRNN": "Brevitas exports QuantRNN to a custom cell op that qonnx 1.0.0 cannot execute",
}

# ONNX domains whose operators onnxruntime executes (qonnx hands them over node by node).
_STANDARD_DOMAINS = ("", "ai.onnx")


def _first_lines(text: object, n: int = 3) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return " ".join(lines[:n])[:600]


def _check_modules(model: Any) -> None:
    for name, module in model.named_modules():
        reason = _UNEXECUTABLE.get(type(module).__name__)
        if reason is not None:
            where = name or "<root>"
            raise UnsupportedLayerError(
                f"cannot export {type(model).__name__} to QONNX: module '{where}' "
                f"({type(module).__module__}.{type(module).__name__}) has no executable QONNX "
                f"form: {reason}. QONNX export supports QuantIdentity, QuantLinear, "
                "QuantConv1d/2d, QuantReLU, pooling, Flatten, BatchNorm and residual adds; "
                "use qnet.simulate or the hls4ml export for recurrent models"
            )


def _fix_stale_rounding(model: Any) -> list[tuple[Any, Any]]:
    """Make each quant proxy's exported ``rounding_mode`` the one its quantiser really uses.

    Brevitas' QONNX handler writes ``proxy.rounding_mode``, read from the injector's
    ``float_to_int_impl_type``; a quantiser built with ``.let(float_to_int_impl=FloorSte)`` keeps
    the stale ``ROUND`` there, so the Quant node would round while Brevitas floors (measured:
    every sample differed). Swap in a corrected injector for the export; returns
    ``(proxy, original injector)`` pairs to restore.
    """
    from brevitas.core.quant.int_base import IntQuant
    from brevitas.inject.enum import FloatToIntImplType
    from brevitas.proxy.quant_proxy import QuantProxyFromInjector
    from brevitas.utils.quant_utils import float_to_int_impl_to_enum

    swapped = []
    for name, proxy in model.named_modules():
        if not isinstance(proxy, QuantProxyFromInjector):
            continue
        impls = [m.float_to_int_impl for m in proxy.modules() if isinstance(m, IntQuant)]
        modes = {str(float_to_int_impl_to_enum(impl)).split(".")[-1].upper() for impl in impls}
        if len(modes) > 1:
            raise UnsupportedLayerError(
                f"quantiser '{name}' of {type(model).__name__} mixes rounding modes "
                f"{sorted(modes)}; QONNX Quant nodes take one"
            )
        if not modes:
            continue
        mode = next(iter(modes))
        if str(proxy.rounding_mode).split(".")[-1].upper() != mode:
            actual = getattr(FloatToIntImplType, mode)
            swapped.append((proxy, proxy.quant_injector))
            proxy.quant_injector = proxy.quant_injector.let(float_to_int_impl_type=actual)
    return swapped


def _check_custom_ops(wrapped: Any, model_name: str) -> None:
    from qonnx.custom_op.registry import getCustomOp

    for node in wrapped.graph.node:
        if node.domain in _STANDARD_DOMAINS:
            continue
        try:
            getCustomOp(node)
        except Exception as exc:  # qonnx raises KeyError/Exception for unknown ops
            raise UnsupportedLayerError(
                f"QONNX export of {model_name} contains node '{node.name}' of type "
                f"{node.domain}::{node.op_type}, which qonnx cannot execute "
                f"({_first_lines(exc, 1)})"
            ) from exc


def export_qonnx(
    model: Any,
    example_input: Any,
    path: str | os.PathLike[str],
    *,
    exporter: str = "torchscript",
) -> Path:
    """Export a Brevitas model to a cleaned-up, executable QONNX file.

    Parameters
    ----------
    model : torch.nn.Module
        A Brevitas model. It is exported in eval mode; its training flag is restored after.
    example_input : torch.Tensor or numpy.ndarray
        An input of shape (N, *input shape); only the first sample is used, so the file has a
        fixed batch dimension of 1.
    path : path
        The ``.onnx`` file to write (replaced atomically; the parent folder is created).
    exporter : {"torchscript", "dynamo"}
        Which torch ONNX exporter Brevitas uses (see the module notes).

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    UnsupportedLayerError
        The model contains a layer whose QONNX form qonnx cannot execute (e.g. ``QuantLSTM``).
    FormatError
        Brevitas or qonnx failed on the model, or ``example_input`` is not a float tensor.
    """
    import torch

    if exporter not in EXPORTERS:
        raise FormatError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if not isinstance(model, torch.nn.Module):
        raise FormatError(f"export_qonnx needs a torch.nn.Module, got {type(model).__name__}")
    model_name = type(model).__name__
    if isinstance(example_input, np.ndarray):
        example_input = torch.from_numpy(np.asarray(example_input, dtype=np.float32))
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
        raise FormatError(
            f"example_input for {model_name} must be a tensor of shape (N, *input shape), got "
            f"{type(example_input).__name__} of shape {getattr(example_input, 'shape', None)}"
        )
    _check_modules(model)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    was_training = model.training
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
            warnings.filterwarnings("ignore", category=UserWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            from brevitas.export import export_qonnx as brevitas_export_qonnx
            from qonnx.core.modelwrapper import ModelWrapper
            from qonnx.util.cleanup import cleanup_model

            model.eval()
            swapped = _fix_stale_rounding(model)
            try:
                with torch.no_grad():
                    brevitas_export_qonnx(
                        model,
                        example_input[:1].detach().float(),
                        str(tmp),
                        dynamo=exporter == "dynamo",
                    )
            except Exception as exc:  # brevitas/torch.onnx raise many exception types
                raise FormatError(
                    f"Brevitas could not export {model_name} to QONNX ({exporter} exporter): "
                    f"{type(exc).__name__}: {_first_lines(exc)}"
                ) from exc
            finally:
                for proxy, injector in swapped:
                    proxy.quant_injector = injector
            wrapped = ModelWrapper(str(tmp))
            _check_custom_ops(wrapped, model_name)
            try:
                wrapped = cleanup_model(wrapped)
            except Exception as exc:  # qonnx passes raise bare Exception
                raise FormatError(
                    f"qonnx cleanup_model failed on the QONNX export of {model_name}: "
                    f"{type(exc).__name__}: {_first_lines(exc)}"
                ) from exc
            wrapped.save(str(tmp))
        default_mode(tmp)  # mkstemp creates 0600; honour the umask instead
        os.replace(tmp, path)
    finally:
        model.train(was_training)
        tmp.unlink(missing_ok=True)
    return path


def _load(model_or_path: Any) -> Any:
    from qonnx.core.modelwrapper import ModelWrapper

    if isinstance(model_or_path, ModelWrapper):
        return model_or_path
    path = Path(model_or_path)
    if not path.is_file():
        raise FormatError(f"QONNX file {path} does not exist")
    try:
        return ModelWrapper(str(path))
    except Exception as exc:  # onnx raises DecodeError and others on a bad file
        raise FormatError(
            f"{path} is not a readable ONNX model: {type(exc).__name__}: {_first_lines(exc, 1)}"
        ) from exc


def execute_qonnx(
    model_or_path: Any,
    x: np.ndarray,
    *,
    quiet: bool = False,
) -> np.ndarray:
    """Run a QONNX model with qonnx's ``execute_onnx``, batch by batch.

    Parameters
    ----------
    model_or_path : path or qonnx ModelWrapper
        A file written by :func:`export_qonnx` (or any single-input, single-output QONNX
        model).
    x : numpy.ndarray
        Float inputs of shape (N, *input shape), as the Brevitas model gets them. The QONNX
        input is float32, so ``x`` is cast to float32 (pass float32-representable values to
        compare with other executors).
    quiet : bool
        Hide the progress bar (shown only when more than one batch is run).

    Returns
    -------
    numpy.ndarray
        float64 outputs of shape (N, *output shape without batch).

    Raises
    ------
    DataError
        ``x`` has the wrong shape or is not finite.
    FormatError
        The file is missing or not an ONNX model, or qonnx fails to execute it.
    """
    wrapped = _load(model_or_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        from qonnx.core.onnx_exec import execute_onnx

    if len(wrapped.graph.input) != 1 or len(wrapped.graph.output) != 1:
        raise FormatError(
            f"execute_qonnx runs single-input, single-output models; this one has "
            f"{len(wrapped.graph.input)} inputs and {len(wrapped.graph.output)} outputs"
        )
    in_name = wrapped.graph.input[0].name
    out_name = wrapped.graph.output[0].name
    in_shape = tuple(d.dim_value for d in wrapped.graph.input[0].type.tensor_type.shape.dim)
    x = np.asarray(x)
    if x.ndim != len(in_shape) or x.shape[1:] != in_shape[1:]:
        raise DataError(
            f"inputs of shape {x.shape} do not fit the QONNX input '{in_name}' of shape "
            f"(N, {', '.join(map(str, in_shape[1:]))})"
        )
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise DataError("QONNX inputs must be finite numbers (found NaN, inf or non-numbers)")
    x = x.astype(np.float32)
    n = len(x)
    # A fixed batch dimension (Brevitas exports one) must be fed exactly; a symbolic one (0)
    # takes everything at once.
    batch = in_shape[0] if in_shape[0] > 0 else max(n, 1)
    starts = range(0, n, batch)

    progress = None
    if not quiet and len(starts) > 1:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[bold]qonnx[/] execute_onnx"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        progress.start()
        task = progress.add_task("samples", total=n)
    outputs = []
    try:
        for start in starts:
            chunk = x[start : start + batch]
            real = len(chunk)
            if real < batch:  # pad the last batch; the padding rows are dropped below
                pad = np.zeros((batch - real, *chunk.shape[1:]), dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            try:
                y = execute_onnx(wrapped, {in_name: chunk})[out_name]
            except Exception as exc:  # qonnx/onnxruntime raise bare Exception
                raise FormatError(
                    f"qonnx execute_onnx failed on sample {start}: {type(exc).__name__}: "
                    f"{_first_lines(exc, 2)}"
                ) from exc
            outputs.append(np.asarray(y, dtype=np.float64)[:real])
            if progress is not None:
                progress.update(task, advance=real)
    finally:
        if progress is not None:
            progress.stop()
    if not outputs:
        out_shape = tuple(d.dim_value for d in wrapped.graph.output[0].type.tensor_type.shape.dim)
        return np.zeros((0, *out_shape[1:]), dtype=np.float64)
    return np.concatenate(outputs)
