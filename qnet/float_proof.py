"""Proofs that a Brevitas/hardware difference on a float-scale model is a float32 rounding case.

The hardware computes a float-scale layer exactly (integer accumulator, then a requantisation
by thresholds built from the exact real-valued math, :mod:`qnet.lowering.requant`). Brevitas
computes the same layer in float32: ``F.linear`` / ``F.conv`` on ``x.value`` and ``w.value``
(each ``int * scale`` rounded to float32), products and sums rounded in its BLAS order, then
``x / scale`` rounded again in the next quantiser. So Brevitas' pre-quantisation value ``v_b``
differs from the exact ``r`` by at most (Higham's bound for a dot product of ``n`` terms, two
more roundings for the operands, one for the bias, ``u = 2**-24``)::

    E_acc = gamma(n + 3) * (S * sum_i |x_i| |w_i| + |B|),   gamma(k) = k u / (1 - k u)

and its quantiser divides once more: ``E = E_acc + u (|r| + E_acc)``.

A difference is *explained* when it can come from that error alone:

* at a requantisation (the first one, in graph order, where the two differ for a sample: before
  it both computed on equal integers), Brevitas' integer lies between the hardware's
  requantiser evaluated at ``r - E`` and at ``r + E`` (the requantiser is monotone per
  channel), i.e. ``r`` is within ``E`` of a rounding boundary; the report gives the largest
  ``|r - boundary| / E``;
* at a float output (the logits of a float-scale last layer, where nothing rounds them to a
  grid), Brevitas' value lies within ``E_acc`` of the exact ``r`` (then through the same host
  float ops); the report gives the largest ``|brevitas - r| / E_acc``.

Anything else is unexplained, and the verification fails.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from qnet.hw.fixed import Rounding, round_rational
from qnet.hw.graph import HwGraph
from qnet.hw.host import host_ops_from_json, run_host

__all__ = ["FloatProof", "prove", "UNIT_ROUNDOFF"]

#: float32 unit roundoff
UNIT_ROUNDOFF = 2.0**-24
#: slack for the float64 arithmetic of the proof itself (relative)
_SLACK = 1.0 + 2.0**-30


def _gamma(k: int) -> float:
    ku = k * UNIT_ROUNDOFF
    return ku / (1.0 - ku)


@dataclass
class FloatProof:
    """What the proof found, for the samples where Brevitas and the hardware differ."""

    samples: int = 0
    explained: int = 0
    requant_elements: int = 0
    exact_requant_elements: int = 0
    output_elements: int = 0
    max_requant_ratio: float = 0.0
    max_output_ratio: float = 0.0
    max_bound_steps: float = 0.0
    unexplained: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.explained == self.samples and not self.unexplained

    def summary(self) -> str:
        parts = [f"{self.explained}/{self.samples} differing samples proven float32 rounding cases"]
        if self.requant_elements:
            ratio = (
                f"max |distance|/bound {self.max_requant_ratio:.3g}, "
                if self.exact_requant_elements
                else ""
            )
            parts.append(
                f"{self.requant_elements} requantised values within the float32 error bound "
                f"of a rounding boundary ({ratio}bound <= {self.max_bound_steps:.3g} "
                "quantisation steps)"
            )
        if self.output_elements:
            parts.append(
                f"{self.output_elements} float outputs within the float32 error bound of the "
                f"exact value (max |brevitas - exact|/bound {self.max_output_ratio:.3g})"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "explained": self.explained,
            "requant_elements": self.requant_elements,
            "exact_requant_elements": self.exact_requant_elements,
            "output_elements": self.output_elements,
            "max_requant_ratio": self.max_requant_ratio,
            "max_output_ratio": self.max_output_ratio,
            "max_bound_steps": self.max_bound_steps,
            "unexplained": list(self.unexplained),
        }


# ------------------------------------------------------------------------- bounds
def _abs_products(graph: HwGraph, name: str, trace: dict[str, np.ndarray]) -> np.ndarray:
    """sum_i |x_i| |w_i| (fixed-point values) for every output of weighted layer ``name``."""
    import torch
    import torch.nn.functional as F

    layer: Any = graph[name]
    src = graph[layer.inputs[0]]
    x = np.abs(np.ldexp(trace[src.name].astype(np.float64), -src.out_type.frac))
    w = np.abs(np.ldexp(layer.weight.astype(np.float64), -layer.weight_type.frac))
    if layer.kind == "dense":
        return x @ w.reshape(w.shape[0], -1).T
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    conv = F.conv1d if w.ndim == 3 else F.conv2d
    groups = int(getattr(layer, "groups", 1))
    dilation = tuple(getattr(layer, "dilation", (1,) * (w.ndim - 2)))
    out = conv(
        xt,
        wt,
        stride=tuple(layer.stride),
        padding=tuple(layer.padding),
        dilation=dilation,
        groups=groups,
    )
    return out.numpy()


def _max_pool(v: np.ndarray, layer: Any) -> np.ndarray:
    """Max over a MaxPool layer's windows of one sample ``(C, *spatial)``."""
    kernel, stride = tuple(layer.kernel), tuple(layer.stride)
    win = np.lib.stride_tricks.sliding_window_view(v, kernel, axis=tuple(range(1, v.ndim)))
    win = win[(slice(None), *(slice(None, None, s) for s in stride))]
    out = win.reshape(*win.shape[: v.ndim], -1).max(axis=-1)
    return out[(slice(None), *(slice(0, n) for n in layer.out_shape[1:]))]


def _channel(values: list[float] | None, shape: tuple[int, ...], default: float) -> np.ndarray:
    """Per-channel constants broadcast to a per-sample ``shape`` (channels on axis 0)."""
    arr = np.full(1, default) if values is None else np.asarray(values, dtype=np.float64)
    if arr.size == 1:
        return np.full(shape, float(arr[0]))
    return np.broadcast_to(arr.reshape((-1,) + (1,) * (len(shape) - 1)), shape)


def _acc_bound(
    graph: HwGraph,
    acc: str,
    trace: dict[str, np.ndarray],
    scale: np.ndarray,
    offset: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(exact real value r, E_acc) for every output of ``acc`` (batch of traced samples)."""
    layer: Any = graph[acc]
    fv = np.ldexp(trace[acc].astype(np.float64), -layer.out_type.frac)
    r = fv * scale + offset
    n = int(np.prod(layer.weight.shape[1:]))
    e_acc = _gamma(n + 3) * (scale * _abs_products(graph, acc, trace) + np.abs(offset))
    return r, e_acc * _SLACK + np.abs(r) * 2.0**-50


# --------------------------------------------------------------------- requantisers
def _q_exact(entry: dict[str, Any], v: float) -> int:
    s_y = (
        Fraction(entry["out_scale"])
        if entry["out_scale"] is not None
        else Fraction(2) ** -entry["out_frac"]
    )
    q = Fraction(v) / s_y
    num = np.array([q.numerator], dtype=object)
    y = int(round_rational(num, q.denominator, Rounding[entry["rounding"]])[0])
    lo = max(entry["int_min"], 0) if entry["relu"] else entry["int_min"]
    return int(min(max(y, lo), entry["int_max"]))


def _q_float32(
    entry: dict[str, Any], ops: Any, v: np.ndarray, channel_shape: tuple[int, ...]
) -> np.ndarray:
    """The torch-replay requantiser: host ops then the quantiser, in float32 (Brevitas' IntQuant:
    ``round(x / scale)`` then clamp)."""
    x = run_host(ops, v.reshape((1,) + channel_shape).astype(np.float32)).reshape(-1)
    if entry["relu"]:
        x = np.maximum(x, np.float32(0))
    if entry["out_scale"] is not None:
        y = (x / np.float32(entry["out_scale"])).astype(np.float32).astype(np.float64)
    else:
        y = np.ldexp(x.astype(np.float64), entry["out_frac"])
    mode = entry["rounding"]
    if mode == Rounding.RND_CONV.name:
        y = np.round(y)
    elif mode == Rounding.TRN.name:
        y = np.floor(y)
    else:
        y = np.trunc(y)
    lo = max(entry["int_min"], 0) if entry["relu"] else entry["int_min"]
    return np.clip(y, lo, entry["int_max"]).astype(np.int64)


def _down32(v: float) -> np.float32:
    f = np.float32(v)
    return np.nextafter(f, np.float32(-np.inf)) if float(f) > v else f


def _up32(v: float) -> np.float32:
    f = np.float32(v)
    return np.nextafter(f, np.float32(np.inf)) if float(f) < v else f


# ----------------------------------------------------------------------------- proof
def _capture(model: Any, x: np.ndarray, paths: list[str]) -> tuple[dict[str, np.ndarray], set[str]]:
    """Brevitas' output values of the modules at ``paths`` (float64); and the paths called more
    than once (their capture is ambiguous)."""
    import torch

    got: dict[str, np.ndarray] = {}
    twice: set[str] = set()
    handles = []
    for path in paths:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            twice.add(path)
            continue

        def hook(_m: Any, _i: Any, out: Any, path: str = path) -> None:
            first: Any = out[0] if isinstance(out, tuple) else out
            value: Any = getattr(first, "value", first)
            if not isinstance(value, torch.Tensor):
                twice.add(path)  # not a tensor: nothing to compare with
                return
            if path in got:
                twice.add(path)
            got[path] = value.detach().double().cpu().numpy()

        handles.append(module.register_forward_hook(hook))
    try:
        model.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model(torch.as_tensor(x, dtype=torch.float32))
    finally:
        for h in handles:
            h.remove()
    return got, twice


def prove(
    model: Any, graph: HwGraph, x: np.ndarray, brevitas: np.ndarray, hardware: np.ndarray
) -> FloatProof | None:
    """Explain every sample where ``brevitas`` != ``hardware`` (the simulator's output), or
    list what cannot be explained. None when the graph has no float-scale layer."""
    from qnet.hw.simulator import simulate_int

    entries: list[dict[str, Any]] = list(graph.meta.get("float_requant", []))
    fout: dict[str, Any] | None = graph.meta.get("float_output")
    if not entries and fout is None:
        return None
    n = brevitas.shape[0]
    bad = np.where(~(brevitas == hardware).reshape(n, -1).all(axis=1))[0]
    proof = FloatProof(samples=int(bad.size))
    if not bad.size:
        return proof
    xb = x[bad]
    trace = simulate_int(graph, xb, trace=True)
    names = {layer.name for layer in graph.layers}
    brev, twice = _capture(model, xb, [e["module"] for e in entries])
    out = _prove_outputs(graph, fout, trace, brevitas[bad], hardware[bad])
    for local, sample in enumerate(bad):
        verdict = _explain_sample(graph, entries, trace, brev, twice, names, local)
        if verdict == "outputs":  # every requantisation agrees: the float outputs decide
            verdict = _output_verdict(out, local, brevitas[sample], hardware[sample])
        if isinstance(verdict, str):
            if len(proof.unexplained) >= 10:
                proof.unexplained.append("...")
                break
            proof.unexplained.append(f"sample {int(sample)}: {verdict}")
            continue
        kind, count, ratio, steps = verdict
        proof.explained += 1
        if kind in ("requant", "requant-exact"):
            proof.requant_elements += count
            proof.exact_requant_elements += count if kind == "requant-exact" else 0
            proof.max_requant_ratio = max(proof.max_requant_ratio, ratio)
            proof.max_bound_steps = max(proof.max_bound_steps, steps)
        else:
            proof.output_elements += count
            proof.max_output_ratio = max(proof.max_output_ratio, ratio)
    return proof


def _output_verdict(out: Any, local: int, b: np.ndarray, hw: np.ndarray) -> Any:
    if out is None:
        return (
            "the outputs differ while every requantisation agrees, and the output is not a "
            "float accumulator"
        )
    inside, ratio = out
    if not inside[local].all():
        where = tuple(int(v) for v in np.argwhere(~inside[local])[0])
        return (
            f"output element {where} (Brevitas {float(b.reshape(inside[local].shape)[where])!r}, "
            f"hardware {float(hw.reshape(inside[local].shape)[where])!r}) is outside the "
            "float32 error bound of the exact value"
        )
    return ("output", int((b != hw).sum()), float(ratio[local]), 0.0)


def _requant_ints(entry: dict[str, Any], values: np.ndarray) -> np.ndarray:
    if entry["out_scale"] is not None:
        return np.round(values / np.float64(np.float32(entry["out_scale"]))).astype(np.int64)
    return np.round(np.ldexp(values, entry["out_frac"])).astype(np.int64)


def _explain_sample(
    graph: HwGraph,
    entries: list[dict[str, Any]],
    trace: dict[str, np.ndarray],
    brev: dict[str, np.ndarray],
    twice: set[str],
    names: set[str],
    i: int,
) -> Any:
    """None (differs only at the output: decided by :func:`_prove_outputs`), a reason string
    (unexplained), or ``("requant", elements, max ratio, max bound in steps)``."""
    for e in entries:
        if e["layer"] not in names:
            continue  # pruned
        if e["module"] in twice or e["module"] not in brev:
            return f"cannot capture Brevitas' output of module {e['module']!r}"
        hw = trace[e["layer"]][i]
        bv = _requant_ints(e, brev[e["module"]][i].reshape(hw.shape))
        diff = np.argwhere(hw != bv)
        if not diff.size:
            continue
        return _explain_requant(graph, e, trace, i, hw, bv, diff)
    return "outputs"


def _explain_requant(
    graph: HwGraph,
    e: dict[str, Any],
    trace: dict[str, np.ndarray],
    i: int,
    hw: np.ndarray,
    bv: np.ndarray,
    diff: np.ndarray,
) -> Any:
    acc = e["input"]
    pool: Any = None
    if graph[acc].kind == "maxpool":  # max commutes with the positive per-channel scale
        pool, acc = graph[acc], graph[acc].inputs[0]
    if graph[acc].kind not in ("dense", "conv"):
        return (
            f"requantisation {e['layer']!r} differs, and its input {acc!r} is not an "
            "accumulator (or a max pool of one): no proof implemented"
        )
    if e["pending"] is None:
        return f"requantisation {e['layer']!r} differs and its float ops have no host replay"
    if e.get("kind", "int") != "int":
        return f"requantisation {e['layer']!r} differs (binary/ternary quantiser): no proof"
    shape = hw.shape
    acc_shape = graph[acc].out_shape
    scale = _channel(e["scale"], acc_shape, 1.0)
    offset = _channel(e["offset"], acc_shape, 0.0)
    one = {k: v[i : i + 1] for k, v in trace.items()}
    r, e_acc = _acc_bound(graph, acc, one, scale[None], offset[None])
    r, e_acc = r[0], e_acc[0]
    if pool is not None:
        # Brevitas' max of values each within E_j of r_j is within max E_j of max r_j
        r, e_acc = _max_pool(r, pool), _max_pool(e_acc, pool)
    ops = host_ops_from_json(e["pending"], "float_requant") if e["pending"] else ()
    s_y = e["out_scale"] if e["out_scale"] is not None else 2.0 ** -e["out_frac"]
    worst = steps = 0.0
    for idx in map(tuple, diff):
        rv, ea = float(r[idx]), float(e_acc[idx])
        bound = (ea + UNIT_ROUNDOFF * (abs(rv) + ea)) * _SLACK
        if e["exact"]:
            ends = (_q_exact(e, rv - bound), _q_exact(e, rv + bound))
        else:
            c = idx[0]
            chan_shape = (shape[0],) + (1,) * (len(shape) - 1)
            col = np.zeros(chan_shape)
            lo_v, hi_v = col.copy(), col.copy()
            lo_v.reshape(-1)[c], hi_v.reshape(-1)[c] = _down32(rv - bound), _up32(rv + bound)
            ends = (
                int(_q_float32(e, ops, lo_v, chan_shape)[c]),
                int(_q_float32(e, ops, hi_v, chan_shape)[c]),
            )
        lo, hi = min(ends), max(ends)
        if not (lo <= int(bv[idx]) <= hi and lo <= int(hw[idx]) <= hi):
            return (
                f"requantisation {e['layer']!r} element {idx}: Brevitas {int(bv[idx])}, "
                f"hardware {int(hw[idx])}, but the exact value {rv!r} is not within the "
                f"float32 error bound {bound:.3g} of a rounding boundary (reachable: {lo}..{hi})"
            )
        if e["exact"] and e["rounding"] == Rounding.RND_CONV.name:
            boundary = (min(int(bv[idx]), int(hw[idx])) + 0.5) * s_y
            worst = max(worst, abs(rv - boundary) / bound)
        steps = max(steps, bound / s_y)
    kind = "requant-exact" if e["exact"] and e["rounding"] == Rounding.RND_CONV.name else "requant"
    return (kind, int(diff.shape[0]), worst, steps)


def _prove_outputs(
    graph: HwGraph,
    fout: dict[str, Any] | None,
    trace: dict[str, np.ndarray],
    brevitas: np.ndarray,
    hardware: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per traced sample and output element: do Brevitas' and the hardware's values lie where
    the exact value
    ``r`` +- E_acc, rounded outward to float32 and through the remaining host ops, can put it?
    Returns (inside (N, ...), max |brevitas - r| / E_acc per sample) or None (no float output)."""
    if fout is None or graph[fout["layer"]].kind not in ("dense", "conv"):
        return None
    shape = graph.output.out_shape
    scale = _channel(fout["scale"], shape, 1.0)
    offset = _channel(fout["offset"], shape, 0.0)
    r, e_acc = _acc_bound(graph, fout["layer"], trace, scale[None], offset[None])
    lo = np.vectorize(lambda v: float(_down32(v)))(r - e_acc).astype(np.float32)
    hi = np.vectorize(lambda v: float(_up32(v)))(r + e_acc).astype(np.float32)
    rest = graph.post[1:]
    if rest:
        lo, hi = run_host(rest, lo), run_host(rest, hi)
    lo64, hi64 = np.minimum(lo, hi).astype(np.float64), np.maximum(lo, hi).astype(np.float64)
    b = brevitas.reshape(lo64.shape)
    hw = hardware.reshape(lo64.shape)
    # both Brevitas and the hardware must lie where the exact value's float32 rounding can
    inside = (b >= lo64) & (b <= hi64) & (hw >= lo64) & (hw <= hi64)
    n = b.shape[0]
    ratio = np.zeros(n)
    if not rest:
        with np.errstate(divide="ignore", invalid="ignore"):
            rr = np.where(e_acc > 0, np.abs(b - r) / e_acc, 0.0)
        ratio = rr.reshape(n, -1).max(axis=1)
    return inside, ratio
