"""``qnet.verify``: Brevitas == simulator == hls4ml C simulation (== RTL), bit for bit.

(The module is ``qnet.verification``; ``qnet.verify`` is always the function.)

An executor the caller asked for (``csim``, ``rtl``) that cannot run is an error
(:class:`~qnet.errors.ToolNotFoundError` for a missing tool, else
:class:`~qnet.errors.VerificationError`), never a pass. With ``allow_missing=True`` the report
says NOT VERIFIED for it instead, and ``all_exact`` is False.

Every executor gets the same float32 input. The simulator and the hls4ml C simulation model
the hardware (exact integers) and must always agree. Brevitas computes in float32 and is exact
only while each accumulator's partial sums stay below 2**24 lsb; the lowering lists the layers
past that bound in ``graph.meta['float32_inexact']``, and a Brevitas mismatch is then reported
as *excused* (the report says why) rather than as a failure.

A model with float (non-power-of-two) scales: Brevitas' float32 arithmetic differs from the
exact hardware at rounding boundaries. Every differing sample must then be proven a float32
rounding case (:mod:`qnet.float_proof`); the pair is excused only if all are, and the report
shows the proof's counts and bound ratios, or the UNEXPLAINED differences.

On a simulator/C-simulation mismatch, the first diverging layer is found by comparing hls4ml's
per-layer trace with the simulator's trace on the mismatching samples.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from qnet.errors import (
    BuildError,
    QnetError,
    ToolNotFoundError,
    UnsupportedLayerError,
    VerificationError,
)
from qnet.float_proof import FloatProof, prove
from qnet.hw.boards import Board
from qnet.hw.graph import HwGraph
from qnet.hw.options import DEFAULT_BOARD, BuildOptions

if TYPE_CHECKING:
    import torch

    from qnet.checkpoint import Checkpoint
    from qnet.export.hls_base import HlsExport
    from qnet.sources import ModelSource

#: What :func:`verify` accepts as the model.
ModelInput = Union["torch.nn.Module", str, Path, "Checkpoint", "ModelSource", HwGraph]
#: A board name, board file or :class:`~qnet.hw.boards.Board`.
BoardSpec = str | Path | Board

__all__ = ["verify", "VerifyReport", "PairResult", "Divergence", "ExecutorRun", "VERIFY_EXIT_CODE"]

#: Exit code of ``qnet verify`` when executors disagree (that of VerificationError).
VERIFY_EXIT_CODE = VerificationError.exit_code

EXECUTORS = ("brevitas", "simulator", "csim", "rtl")


@dataclass(frozen=True)
class Divergence:
    """Where two executors first differ.

    Attributes
    ----------
    layer : str or None
        The first HwGraph layer whose outputs differ (None when only outputs can be compared).
    sample : int
        Index of the sample in the verified batch.
    index : tuple of int
        Element index inside that layer's per-sample output (HwGraph layout, channels-first).
    value_a, value_b : float
        The two executors' values there.
    """

    layer: str | None
    sample: int
    index: tuple[int, ...]
    value_a: float
    value_b: float

    def describe(self, a: str, b: str) -> str:
        where = f"layer {self.layer!r}" if self.layer else "the output"
        return (
            f"first divergence at {where}, sample {self.sample}, element {self.index}: "
            f"{a} = {self.value_a!r}, {b} = {self.value_b!r}"
        )


@dataclass(frozen=True)
class PairResult:
    """How many outputs of two executors are exactly equal."""

    a: str
    b: str
    samples_equal: int
    samples: int
    elements_equal: int
    elements: int
    divergence: Divergence | None = None
    excused: str = ""
    proof: FloatProof | None = None

    @property
    def exact(self) -> bool:
        return self.samples_equal == self.samples


@dataclass(frozen=True)
class ExecutorRun:
    """One executor: did it run, how long, or why not.

    ``requested`` executors (csim, rtl when asked for) that did not run leave the report
    NOT VERIFIED (only possible with ``allow_missing=True``).
    """

    name: str
    ran: bool
    seconds: float = 0.0
    reason: str = ""
    requested: bool = False


@dataclass(frozen=True)
class VerifyReport:
    """The result of :func:`verify`.

    Attributes
    ----------
    samples : int
    executors : tuple of ExecutorRun
    pairs : tuple of PairResult
    float32_inexact : tuple of str
        Layers whose accumulator bound passes 2**24 lsb (Brevitas' float32 is not exact there).
    export : dict
        The export options used (board, io_type, reuse_factor, strategy, ...).
    outputs : dict
        Each executor's output (float64, HwGraph layout) by executor name.
    """

    samples: int
    executors: tuple[ExecutorRun, ...]
    pairs: tuple[PairResult, ...]
    float32_inexact: tuple[str, ...] = ()
    export: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def not_verified(self) -> tuple[str, ...]:
        """Executors the caller asked for that did not run (``allow_missing=True``)."""
        return tuple(r.name for r in self.executors if r.requested and not r.ran)

    @property
    def all_exact(self) -> bool:
        """True when every requested executor ran, every compared pair is exactly equal
        (excused Brevitas pairs aside) and at least one pair was compared."""
        return (
            bool(self.pairs)
            and not self.not_verified
            and all(p.exact or p.excused for p in self.pairs)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no output arrays)."""
        return {
            "samples": self.samples,
            "all_exact": self.all_exact,
            "not_verified": list(self.not_verified),
            "executors": {
                r.name: {
                    "ran": r.ran,
                    "requested": r.requested,
                    "seconds": round(r.seconds, 3),
                    "reason": r.reason,
                }
                for r in self.executors
            },
            "pairs": [
                {
                    "pair": f"{p.a} vs {p.b}",
                    "samples_equal": p.samples_equal,
                    "samples": p.samples,
                    "elements_equal": p.elements_equal,
                    "elements": p.elements,
                    "exact": p.exact,
                    "excused": p.excused,
                    "divergence": p.divergence.describe(p.a, p.b) if p.divergence else None,
                    "float32_proof": p.proof.to_dict() if p.proof is not None else None,
                }
                for p in self.pairs
            ],
            "float32_inexact": list(self.float32_inexact),
            "export": dict(self.export),
        }

    def pair(self, a: str, b: str) -> PairResult:
        for p in self.pairs:
            if {p.a, p.b} == {a, b}:
                return p
        raise KeyError(f"no comparison of {a} and {b} in this report")

    def table(self) -> str:
        """A plain-text table: one row per pair, then executors not run and divergences."""
        lines = [f"{'pair':<24} {'samples equal':>18} {'elements equal':>22}  result"]
        for p in self.pairs:
            result = "EXACT" if p.exact else ("excused: " + p.excused if p.excused else "MISMATCH")
            lines.append(
                f"{p.a + ' vs ' + p.b:<24} {f'{p.samples_equal}/{p.samples}':>18} "
                f"{f'{p.elements_equal}/{p.elements}':>22}  {result}"
            )
        for run in self.executors:
            if not run.ran:
                status = "NOT VERIFIED, did not run" if run.requested else "not run"
                lines.append(f"{run.name}: {status} ({run.reason})")
        for p in self.pairs:
            if p.divergence is not None:
                lines.append(f"{p.a} vs {p.b}: {p.divergence.describe(p.a, p.b)}")
            if p.proof is not None and p.proof.samples:
                lines.append(f"{p.a} vs {p.b}: float32 proof: {p.proof.summary()}")
                for text in p.proof.unexplained:
                    lines.append(f"{p.a} vs {p.b}: UNEXPLAINED {text}")
        if self.float32_inexact:
            lines.append(
                "float32 note: Brevitas is not exact past 2**24 lsb in "
                + ", ".join(self.float32_inexact)
            )
        if self.all_exact:
            lines.append("ALL EXACT")
        else:
            if self.not_verified:
                lines.append("NOT VERIFIED: " + ", ".join(self.not_verified) + " did not run")
            if not self.pairs or not all(p.exact or p.excused for p in self.pairs):
                lines.append("NOT EXACT")
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers
def _first_diff(
    a: np.ndarray, b: np.ndarray, samples: np.ndarray | None = None
) -> tuple[int, tuple[int, ...]] | None:
    diff = a != b
    if not diff.any():
        return None
    pos = np.argwhere(diff)[0]
    sample = int(pos[0]) if samples is None else int(samples[pos[0]])
    return sample, tuple(int(i) for i in pos[1:])


def _compare(
    a_name: str,
    b_name: str,
    a: np.ndarray,
    b: np.ndarray,
    excused: str = "",
    proof: FloatProof | None = None,
) -> PairResult:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise VerificationError(
            f"{a_name} output shape {a.shape} differs from {b_name} output shape {b.shape}"
        )
    n = a.shape[0]
    eq = a == b
    samples_equal = int(eq.reshape(n, -1).all(axis=1).sum())
    divergence = None
    first = _first_diff(a, b)
    if first is not None:
        sample, index = first
        divergence = Divergence(
            None, sample, index, float(a[(sample, *index)]), float(b[(sample, *index)])
        )
    return PairResult(
        a_name,
        b_name,
        samples_equal,
        n,
        int(eq.sum()),
        int(eq.size),
        divergence,
        excused if first is not None else "",
        proof,
    )


def _first_layer_divergence(
    graph: Any, tracer: Any, x: np.ndarray, bad: np.ndarray
) -> Divergence | None:
    """Trace the mismatching samples through another executor (``tracer(x)`` -> every layer's
    output by name) and the simulator; the first layer whose outputs differ."""
    from qnet.hw.simulator import simulate

    subset = bad[:64]
    sim_trace = simulate(graph, x[subset], trace=True)
    hls_trace = tracer(x[subset])
    for layer in graph.layers[1:]:
        if layer.name not in hls_trace or layer.name not in sim_trace:
            continue
        got, want = hls_trace[layer.name], sim_trace[layer.name]
        first = _first_diff(want, got, subset)
        if first is not None:
            sample, index = first
            local = int(np.where(subset == sample)[0][0])
            return Divergence(
                layer.name, sample, index, float(want[(local, *index)]), float(got[(local, *index)])
            )
    return None


def _resolve_model(model_or_checkpoint: ModelInput, x: np.ndarray) -> tuple[Any, HwGraph]:
    """(Brevitas model or None, HwGraph)."""
    if isinstance(model_or_checkpoint, HwGraph):
        return None, model_or_checkpoint
    model = _resolve_model_only(model_or_checkpoint)
    import torch

    from qnet.lowering import lower

    graph = lower(model, torch.as_tensor(x[:1], dtype=torch.float32))
    return model, graph


def _resolve_model_only(obj: ModelInput) -> Any:
    if isinstance(obj, str | Path):
        from qnet.sources import load_model

        return load_model(obj).model
    if hasattr(obj, "model") and not callable(obj):  # Checkpoint / ModelSource
        return obj.model
    return obj


def _run_brevitas(model: Any, x: np.ndarray) -> np.ndarray:
    import warnings

    import torch

    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model(torch.as_tensor(x, dtype=torch.float32))
    if isinstance(out, tuple | list):
        out = out[0]
    value = getattr(out, "value", out)
    return value.detach().cpu().numpy().astype(np.float64)


def _cannot_run(name: str, exc: QnetError, allow_missing: bool, seconds: float) -> ExecutorRun:
    """A requested executor that cannot run: an error, or NOT VERIFIED with ``allow_missing``."""
    reason = f"{type(exc).__name__}: {exc}"
    if allow_missing:
        return ExecutorRun(name, False, seconds, reason, requested=True)
    hint = " (pass allow_missing=True / --allow-missing to report it as NOT VERIFIED instead)"
    if isinstance(exc, ToolNotFoundError):
        raise ToolNotFoundError(f"the {name} executor cannot run: {exc}{hint}") from exc
    raise VerificationError(f"the {name} executor cannot run: {reason}{hint}") from exc


def _run_csim(
    graph: HwGraph,
    x: np.ndarray,
    board: BoardSpec | BuildOptions,
    hls_export: HlsExport | None,
    output_dir: Path,
    export_options: Mapping[str, Any],
) -> tuple[HlsExport, np.ndarray]:
    export = hls_export
    if export is None:
        from qnet.export.hls import to_hls4ml

        export = to_hls4ml(graph, board=board, output_dir=output_dir, write=False, **export_options)
        export.compile()
    return export, export.predict(x)


def _run_rtl(graph: HwGraph, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import tempfile

    from qnet.export.verilog import build_rtl

    with tempfile.TemporaryDirectory(prefix="qnet_rtl_") as rtl_tmp:
        model = build_rtl(graph, Path(rtl_tmp) / "rtl")
        return np.asarray(model.predict(x), dtype=np.float64).reshape(shape)


def _with_divergence(
    pair: PairResult, graph: HwGraph, tracer: Any, x: np.ndarray, a: np.ndarray, b: np.ndarray
) -> PairResult:
    if pair.exact:
        return pair
    bad = np.where(~(a == b).reshape(x.shape[0], -1).all(axis=1))[0]
    div = _first_layer_divergence(graph, tracer, x, bad)
    if div is None:
        return pair
    return PairResult(**{**pair.__dict__, "divergence": div})


def verify(
    model_or_checkpoint: ModelInput,
    x: np.ndarray,
    board: BoardSpec | BuildOptions = DEFAULT_BOARD,
    *,
    csim: bool = True,
    rtl: bool = False,
    allow_missing: bool = False,
    output_dir: str | Path | None = None,
    hls_export: HlsExport | None = None,
    graph: HwGraph | None = None,
    **export_options: Any,
) -> VerifyReport:
    """Run every executor on ``x`` and compare their outputs exactly.

    Parameters
    ----------
    model_or_checkpoint : torch.nn.Module, checkpoint path, Checkpoint, ModelSource or HwGraph
        A Brevitas model (or where to load one). Given a bare HwGraph, Brevitas is not run.
    x : numpy.ndarray
        Float input (N, *in_shape); cast to float32 once so every executor sees the same values.
    board : str, Path, Board or BuildOptions
        The board, or the whole build's options (then leave ``export_options`` to
        precision_overrides).
    csim : bool
        Run the hls4ml C simulation (g++).
    rtl : bool
        Also run the RTL executor (:func:`qnet.export.verilog.build_rtl`: da4ml + Verilator).
    allow_missing : bool
        A requested executor (``csim``, ``rtl``) that cannot run (missing tool, failed build,
        unsupported layer) raises :class:`~qnet.errors.ToolNotFoundError` or
        :class:`~qnet.errors.VerificationError` unless this is true; then the report says
        NOT VERIFIED for it and ``all_exact`` is False.
    output_dir : path, optional
        Where the hls4ml project is written (a temporary folder by default).
    hls_export : HlsExport, optional
        An already compiled export of the same graph (skips export and compile).
    graph : HwGraph, optional
        The lowered graph (skips lowering).
    **export_options
        Passed to :func:`qnet.export.hls.to_hls4ml` (io_type, reuse_factor, strategy,
        clock_period_ns, precision_overrides).

    Returns
    -------
    VerifyReport
        ``report.all_exact``; ``report.table()`` for display.

    Raises
    ------
    ToolNotFoundError
        A requested executor's tool is missing (without ``allow_missing``).
    VerificationError
        A requested executor cannot run for another reason (without ``allow_missing``), or
        ``x`` is not a batch.
    """
    import tempfile

    from qnet.hw.simulator import simulate

    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    if x.ndim < 2 or x.shape[0] < 1:
        raise VerificationError(f"verify needs a batch of inputs (N, ...), got shape {x.shape}")
    runs: list[ExecutorRun] = []
    outputs: dict[str, np.ndarray] = {}

    if graph is None:
        model, graph = _resolve_model(model_or_checkpoint, x)
    else:
        model = (
            None
            if isinstance(model_or_checkpoint, HwGraph)
            else _resolve_model_only(model_or_checkpoint)
        )

    if model is not None:
        t = time.perf_counter()
        outputs["brevitas"] = _run_brevitas(model, x)
        runs.append(ExecutorRun("brevitas", True, time.perf_counter() - t))
    else:
        runs.append(ExecutorRun("brevitas", False, reason="no Brevitas model given (HwGraph only)"))

    t = time.perf_counter()
    outputs["simulator"] = np.asarray(simulate(graph, x))
    runs.append(ExecutorRun("simulator", True, time.perf_counter() - t))
    # csim and RTL run the hardware part only: host preprocessing before, postprocessing after
    full, graph = graph, graph.hardware()
    x_model = x
    x = np.asarray(full.preprocess(x), dtype=np.float64)

    export: HlsExport | None = None
    with tempfile.TemporaryDirectory(prefix="qnet_verify_") as tmp:
        if csim:
            t = time.perf_counter()
            out_dir = Path(output_dir) if output_dir is not None else Path(tmp) / "hls4ml_prj"
            try:
                export, csim_hw = _run_csim(graph, x, board, hls_export, out_dir, export_options)
                outputs["csim"] = full.postprocess(csim_hw)
                runs.append(ExecutorRun("csim", True, time.perf_counter() - t, requested=True))
            except (ToolNotFoundError, BuildError, UnsupportedLayerError) as exc:
                runs.append(_cannot_run("csim", exc, allow_missing, time.perf_counter() - t))
        if rtl:
            t = time.perf_counter()
            try:
                hw_shape = (x.shape[0], *graph.output.out_shape)
                outputs["rtl"] = full.postprocess(_run_rtl(graph, x, hw_shape))
                runs.append(ExecutorRun("rtl", True, time.perf_counter() - t, requested=True))
            except QnetError as exc:
                runs.append(_cannot_run("rtl", exc, allow_missing, time.perf_counter() - t))

        excuse = ""
        inexact = tuple(graph.meta.get("float32_inexact", ()))
        if inexact:
            excuse = "Brevitas float32 sums pass 2**24 lsb in " + ", ".join(inexact)
        sim = outputs["simulator"]
        pairs: list[PairResult] = []
        proof = None
        if "brevitas" in outputs and not np.array_equal(outputs["brevitas"], sim):
            # a float-scale model: every difference must be a proven float32 rounding case
            proof = prove(model, full, x_model, outputs["brevitas"], sim)
            if proof is not None:
                excuse = "float32 rounding, proven" if proof.ok else ""
        if "brevitas" in outputs:
            pairs.append(_compare("brevitas", "simulator", outputs["brevitas"], sim, excuse, proof))
        if export is not None:
            csim_out = outputs["csim"]
            pair = _compare("simulator", "csim", sim, csim_out)
            pairs.append(_with_divergence(pair, graph, export.trace, x, sim, csim_out))
            if "brevitas" in outputs:
                # the proof is about the simulator's values: it carries over only if equal
                same = np.array_equal(csim_out, sim)
                pairs.append(
                    _compare(
                        "brevitas",
                        "csim",
                        outputs["brevitas"],
                        csim_out,
                        excuse if (same or proof is None) else "",
                        proof if same else None,
                    )
                )
        if "rtl" in outputs:
            from qnet.export.verilog import trace_layers

            pair = _compare("simulator", "rtl", sim, outputs["rtl"])
            # the traced da4ml logic, layer by layer (the RTL is generated from it)
            pairs.append(
                _with_divergence(
                    pair, graph, lambda xs: trace_layers(graph, xs), x, sim, outputs["rtl"]
                )
            )
    if isinstance(board, BuildOptions):
        board_name = board.board_spec.name
    else:
        board_name = getattr(board, "name", str(board))
    options: dict[str, Any] = {"board": board_name}
    if export is not None:
        options.update(
            io_type=export.io_type,
            reuse_factor=export.reuse_factor,
            strategy=export.strategy,
            backend=export.backend,
            part=export.part,
        )
    else:
        options.update(export_options)
    return VerifyReport(x.shape[0], tuple(runs), tuple(pairs), inexact, options, outputs)


def verification_inputs(spec: str | Path, n: int, seed: int = 0) -> tuple[Any, np.ndarray, str]:
    """A model source and ``n`` float32 inputs for :func:`verify`.

    Inputs are the checkpoint's data set (test split first, then validation and training
    samples) when it has one, else uniform random values in [0, 1).

    Returns
    -------
    (ModelSource, numpy.ndarray, str)
        The source, the inputs and where they came from.
    """
    from qnet.errors import ConfigError
    from qnet.sources import load_model

    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    source = load_model(spec)
    ckpt = source.checkpoint
    if ckpt is not None and getattr(ckpt, "data_spec", None):
        try:
            from qnet.data import checkpoint_stream

            # Streamed (an .npz is memory-mapped): only the n samples used are read.
            parts: list[np.ndarray] = []
            need = n
            for split in ("test", "val", "train"):
                try:
                    stream = checkpoint_stream(ckpt, None, split)  # the training split
                except QnetError:
                    if split == "test":
                        raise
                    continue  # no validation split
                for xb, _ in stream.batches(need, stop=need):
                    parts.append(xb)
                    need -= len(xb)
                if need <= 0:
                    break
            x = np.concatenate(parts).astype(np.float32)
            return source, x, f"data set {ckpt.data_spec!r}"
        except QnetError:
            pass
    shape = tuple(source.example_input.shape[1:])
    rng = np.random.default_rng(seed)
    return (
        source,
        rng.uniform(0, 1, size=(n, *shape)).astype(np.float32),
        f"uniform random [0, 1), seed {seed}",
    )
