"""``qnet.verify``: Brevitas == simulator == hls4ml C simulation (== RTL), bit for bit.

Every executor gets the same float32 input. The simulator and the hls4ml C simulation model
the hardware (exact integers) and must always agree. Brevitas computes in float32 and is exact
only while each accumulator's partial sums stay below 2**24 lsb; the lowering lists the layers
past that bound in ``graph.meta['float32_inexact']``, and a Brevitas mismatch is then reported
as *excused* (the report says why) rather than as a failure.

On a simulator/C-simulation mismatch, the first diverging layer is found by comparing hls4ml's
per-layer trace with the simulator's trace on the mismatching samples.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qnet._callable import make_module_callable
from qnet.errors import QnetError, VerificationError

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

    @property
    def exact(self) -> bool:
        return self.samples_equal == self.samples


@dataclass(frozen=True)
class ExecutorRun:
    """One executor: did it run, how long, or why not."""

    name: str
    ran: bool
    seconds: float = 0.0
    reason: str = ""


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
    def all_exact(self) -> bool:
        """True when every compared pair is exactly equal (excused Brevitas pairs aside)
        and at least one pair was compared."""
        return bool(self.pairs) and all(p.exact or p.excused for p in self.pairs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no output arrays)."""
        return {
            "samples": self.samples,
            "all_exact": self.all_exact,
            "executors": {
                r.name: {"ran": r.ran, "seconds": round(r.seconds, 3), "reason": r.reason}
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
                lines.append(f"{run.name}: not run ({run.reason})")
        for p in self.pairs:
            if p.divergence is not None:
                lines.append(f"{p.a} vs {p.b}: {p.divergence.describe(p.a, p.b)}")
        if self.float32_inexact:
            lines.append(
                "float32 note: Brevitas is not exact past 2**24 lsb in "
                + ", ".join(self.float32_inexact)
            )
        lines.append("ALL EXACT" if self.all_exact else "NOT EXACT")
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
    a_name: str, b_name: str, a: np.ndarray, b: np.ndarray, excused: str = ""
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


def _resolve_model(model_or_checkpoint: Any, x: np.ndarray) -> tuple[Any, Any]:
    """(Brevitas model or None, HwGraph)."""
    from qnet.hw.graph import HwGraph

    if isinstance(model_or_checkpoint, HwGraph):
        return None, model_or_checkpoint
    model = model_or_checkpoint
    if isinstance(model, str | Path):
        from qnet.sources import load_model

        model = load_model(model).model
    elif hasattr(model, "model") and not callable(model):  # Checkpoint / ModelSource
        model = model.model
    import torch

    from qnet.lowering import lower

    graph = lower(model, torch.as_tensor(x[:1], dtype=torch.float32))
    return model, graph


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


def verify(
    model_or_checkpoint: Any,
    x: np.ndarray,
    board: Any = "pynq-z2",
    *,
    rtl: bool = False,
    output_dir: str | Path | None = None,
    hls_export: Any = None,
    graph: Any = None,
    **export_options: Any,
) -> VerifyReport:
    """Run every executor on ``x`` and compare their outputs exactly.

    Parameters
    ----------
    model_or_checkpoint : torch.nn.Module, checkpoint path, Checkpoint, ModelSource or HwGraph
        A Brevitas model (or where to load one). Given a bare HwGraph, Brevitas is not run.
    x : numpy.ndarray
        Float input (N, *in_shape); cast to float32 once so every executor sees the same values.
    board : str, Path or Board
    rtl : bool
        Also run the RTL executor (``qnet.export.verilog.build_rtl``); if it or its tools are
        missing, the RTL column is reported as not run, with the reason.
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
        model = None if _is_graph(model_or_checkpoint) else _resolve_model_only(model_or_checkpoint)

    if model is not None:
        t = time.perf_counter()
        outputs["brevitas"] = _run_brevitas(model, x)
        runs.append(ExecutorRun("brevitas", True, time.perf_counter() - t))
    else:
        runs.append(ExecutorRun("brevitas", False, reason="no Brevitas model given (HwGraph only)"))

    t = time.perf_counter()
    outputs["simulator"] = np.asarray(simulate(graph, x))
    runs.append(ExecutorRun("simulator", True, time.perf_counter() - t))

    tmp = None
    try:
        t = time.perf_counter()
        export = hls_export
        if export is None:
            from qnet.export.hls import to_hls4ml

            if output_dir is None:
                tmp = tempfile.TemporaryDirectory(prefix="qnet_verify_")
                output_dir = Path(tmp.name) / "hls4ml_prj"
            export = to_hls4ml(
                graph, board=board, output_dir=output_dir, write=False, **export_options
            )
            export.compile()
        outputs["csim"] = export.predict(x)
        runs.append(ExecutorRun("csim", True, time.perf_counter() - t))

        if rtl:
            runs.append(_run_rtl(graph, x, outputs, tmp))

        excuse = ""
        inexact = tuple(graph.meta.get("float32_inexact", ()))
        if inexact:
            excuse = "Brevitas float32 sums pass 2**24 lsb in " + ", ".join(inexact)
        pairs: list[PairResult] = []
        if "brevitas" in outputs:
            pairs.append(
                _compare("brevitas", "simulator", outputs["brevitas"], outputs["simulator"], excuse)
            )
        sim_csim = _compare("simulator", "csim", outputs["simulator"], outputs["csim"])
        if not sim_csim.exact:
            bad = np.where(
                ~(outputs["simulator"] == outputs["csim"]).reshape(x.shape[0], -1).all(axis=1)
            )[0]
            div = _first_layer_divergence(graph, export.trace, x, bad)
            if div is not None:
                sim_csim = PairResult(**{**sim_csim.__dict__, "divergence": div})
        pairs.append(sim_csim)
        if "brevitas" in outputs:
            pairs.append(_compare("brevitas", "csim", outputs["brevitas"], outputs["csim"], excuse))
        if "rtl" in outputs:
            sim_rtl = _compare("simulator", "rtl", outputs["simulator"], outputs["rtl"])
            if not sim_rtl.exact:
                from qnet.export.verilog import trace_layers

                bad = np.where(
                    ~(outputs["simulator"] == outputs["rtl"]).reshape(x.shape[0], -1).all(axis=1)
                )[0]
                # the traced da4ml logic, layer by layer (the RTL is generated from it)
                div = _first_layer_divergence(graph, lambda xs: trace_layers(graph, xs), x, bad)
                if div is not None:
                    sim_rtl = PairResult(**{**sim_rtl.__dict__, "divergence": div})
            pairs.append(sim_rtl)
        options = {
            "board": getattr(board, "name", str(board)),
            "io_type": export.io_type,
            "reuse_factor": export.reuse_factor,
            "strategy": export.strategy,
            "backend": export.backend,
            "part": export.part,
        }
        return VerifyReport(x.shape[0], tuple(runs), tuple(pairs), inexact, options, outputs)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _is_graph(obj: Any) -> bool:
    from qnet.hw.graph import HwGraph

    return isinstance(obj, HwGraph)


def _resolve_model_only(obj: Any) -> Any:
    if isinstance(obj, str | Path):
        from qnet.sources import load_model

        return load_model(obj).model
    if hasattr(obj, "model") and not callable(obj):
        return obj.model
    return obj


def _run_rtl(graph: Any, x: np.ndarray, outputs: dict[str, np.ndarray], tmp: Any) -> ExecutorRun:
    import importlib
    import tempfile

    t = time.perf_counter()
    try:
        verilog = importlib.import_module("qnet.export.verilog")
    except ImportError as exc:
        return ExecutorRun("rtl", False, reason=f"qnet.export.verilog cannot be imported: {exc}")
    build_rtl = getattr(verilog, "build_rtl", None)
    if build_rtl is None:
        return ExecutorRun("rtl", False, reason="qnet.export.verilog has no build_rtl()")
    rtl_tmp = tempfile.TemporaryDirectory(prefix="qnet_rtl_")
    try:
        model = build_rtl(graph, Path(rtl_tmp.name) / "rtl")
        outputs["rtl"] = np.asarray(model.predict(x), dtype=np.float64).reshape(
            outputs["simulator"].shape
        )
    except QnetError as exc:
        return ExecutorRun("rtl", False, reason=f"{type(exc).__name__}: {exc}")
    finally:
        rtl_tmp.cleanup()
    return ExecutorRun("rtl", True, time.perf_counter() - t)


def _options_summary(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


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
            from qnet.data import load_dataset

            data = load_dataset(ckpt.data_spec, ckpt.config.kind, seed=0)
            parts = [p for p in (data.x_test, data.x_val, data.x_train) if p is not None]
            x = np.concatenate(parts)[:n].astype(np.float32)
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


make_module_callable(__name__, verify)
