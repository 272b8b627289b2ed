"""Host-side float stages of a model: preprocessing before the hardware, postprocessing after.

A model's ``forward`` often does float work the hardware never sees: reshaping the raw input,
``2 * x - 1``, ``(x - mean) / std`` before the first quantiser; a float affine (TensorNorm,
BatchNorm) after the last layer. qnet records these as :class:`HostOp` lists
(``HwGraph.pre`` / ``HwGraph.post``) and runs them in float32 exactly as torch does on the CPU
(elementwise IEEE float32 arithmetic, one rounding per torch operation). The hardware input
port takes the tensor after ``pre`` (quantised by the input type); ``post`` is applied by the
host to the hardware output.

BatchNorm in eval mode is computed by torch's CPU kernel as ``fma(x, alpha, beta)`` with
``alpha = invstd * weight`` and ``beta = fma(-mean, alpha, bias)`` in float32 (measured with
torch 2.13 on x86-64: the compiler contracts the kernel's multiply-add), so its op is
``fma`` with those two float32 constants; :func:`fma32` computes a correctly rounded float32
fused multiply-add in NumPy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from qnet.errors import DataError, FormatError

__all__ = [
    "HostOp",
    "HOST_OPS",
    "WIDE_OPS",
    "run_host",
    "fma32",
    "host_ops_to_json",
    "host_ops_from_json",
]

#: op name -> what it computes (``c`` = ``const``, ``d`` = ``const2``; float32 throughout)
HOST_OPS: dict[str, str] = {
    "reshape": "x.reshape(N, *shape)",
    "permute": "x.transpose(0, *(1 + a for a in shape))",
    "add": "x + c",
    "sub": "x - c",
    "rsub": "c - x",
    "mul": "x * c",
    "div": "x / c",
    "rdiv": "c / x",
    "recip_mul": "(1 / x) * c (torch's c / x for a Python number c)",
    "neg": "-x",
    "clamp": "min(max(x, c), d) (either may be absent)",
    "relu": "max(x, 0)",
    "fma": "x * c + d with one rounding",
    "sign": "where(x >= 0, c, -c) (a binary quantiser)",
    "affine": "x * c + d in float64, then one rounding to float32 (a float-scale accumulator)",
}

#: Ops whose constants are float64 and whose input is read in float64 (an integer
#: accumulator may not fit float32); only as the first op of a stage.
WIDE_OPS = frozenset({"affine"})

_CONST_OPS = {"add", "sub", "rsub", "mul", "div", "rdiv", "recip_mul", "fma", "sign", "affine"}


def _f32(value: Any, dtype: Any = np.float32) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.ascontiguousarray(np.asarray(value, dtype=dtype))
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class HostOp:
    """One float32 operation run by the host (see :data:`HOST_OPS`).

    Attributes
    ----------
    op : str
    const, const2 : ndarray of float32 (float64 for :data:`WIDE_OPS`) or None
        Constants, broadcast against the batch tensor ``(N, *shape)`` as torch broadcasts them.
    shape : tuple of int
        Per-sample target shape (``reshape``) or per-sample axis order (``permute``).
    source : str
        The model code it comes from (for messages and ``qnet inspect``).
    """

    op: str
    const: np.ndarray | None = None
    const2: np.ndarray | None = None
    shape: tuple[int, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if self.op not in HOST_OPS:
            raise FormatError(
                f"host op {self.op!r} ({self.source}): unknown; known: {', '.join(HOST_OPS)}"
            )
        dtype = np.float64 if self.op in WIDE_OPS else np.float32
        object.__setattr__(self, "const", _f32(self.const, dtype))
        object.__setattr__(self, "const2", _f32(self.const2, dtype))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.op in _CONST_OPS and self.const is None:
            raise FormatError(f"host op {self.op!r} ({self.source}) needs a constant")
        if self.op in ("fma", "affine") and self.const2 is None:
            raise FormatError(f"host op {self.op!r} ({self.source}) needs two constants")

    def describe(self) -> str:
        """One line for ``qnet inspect``."""
        text = HOST_OPS[self.op]
        if self.op in ("reshape", "permute"):
            text = f"{self.op} {self.shape}"
        else:
            for name, c in (("c", self.const), ("d", self.const2)):
                if c is not None:
                    shown = f"{float(c.reshape(-1)[0]):g}" if c.size == 1 else f"<{c.shape}>"
                    text = re.sub(rf"\b{name}\b", shown, text)
        text = f"{self.op}: {text}"
        return f"{text}  [{self.source}]" if self.source else text

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (float32 constants as exact decimal floats, with their shapes)."""
        out: dict[str, Any] = {"op": self.op, "source": self.source}
        if self.shape or self.op in ("reshape", "permute"):
            out["shape"] = list(self.shape)
        for key in ("const", "const2"):
            c = getattr(self, key)
            if c is not None:
                out[key] = {"shape": list(c.shape), "values": [float(v) for v in c.reshape(-1)]}
        return out

    @classmethod
    def from_json(cls, entry: dict[str, Any], where: str = "host op") -> HostOp:
        try:
            consts = {}
            for key in ("const", "const2"):
                if entry.get(key) is not None:
                    c = entry[key]
                    dtype = np.float64 if entry.get("op") in WIDE_OPS else np.float32
                    consts[key] = np.asarray(c["values"], dtype=dtype).reshape(c["shape"])
            return cls(
                op=str(entry["op"]),
                shape=tuple(entry.get("shape", ())),
                source=str(entry.get("source", "")),
                **consts,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: malformed host op {entry!r} ({exc})") from None


def host_ops_to_json(ops: tuple[HostOp, ...]) -> list[dict[str, Any]]:
    return [op.to_json() for op in ops]


def host_ops_from_json(entries: Any, where: str) -> tuple[HostOp, ...]:
    if not isinstance(entries, list):
        raise FormatError(f"{where}: host ops must be a list")
    return tuple(HostOp.from_json(e, f"{where}[{i}]") for i, e in enumerate(entries))


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 ``a * b + c`` (one rounding, round half to even).

    ``a * b`` is exact in float64; ``s = p + c`` is rounded to float64 and its error ``e`` is
    recovered exactly (TwoSum). Rounding ``s`` to float32 is then correct except when ``s``
    lies exactly half way between two float32 values, where ``e`` decides.
    """
    p = np.asarray(a, np.float64) * np.asarray(b, np.float64)
    c64 = np.asarray(c, np.float64)
    s = p + c64
    bb = s - p
    e = (p - (s - bb)) + (c64 - bb)
    r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    other = np.nextafter(r, np.where(s > r64, np.inf, -np.inf).astype(np.float32))
    tie = (r64 != s) & ((r64 + other.astype(np.float64)) * 0.5 == s) & (e != 0)
    if np.any(tie):
        toward_other = np.sign(e) == np.sign(other.astype(np.float64) - r64)
        r = np.where(tie & toward_other, other, r)
    return np.asarray(r, dtype=np.float32)


def _apply(op: HostOp, x: np.ndarray) -> np.ndarray:
    c: Any = op.const  # present for every op that reads it (checked in HostOp)
    d: Any = op.const2
    if op.op == "reshape":
        return x.reshape(x.shape[0], *op.shape)
    if op.op == "permute":
        return np.ascontiguousarray(x.transpose(0, *(1 + a for a in op.shape)))
    if op.op == "add":
        return x + c
    if op.op == "sub":
        return x - c
    if op.op == "rsub":
        return c - x
    if op.op == "mul":
        return x * c
    if op.op == "div":
        return x / c
    if op.op == "rdiv":
        return c / x
    if op.op == "recip_mul":
        return (np.float32(1) / x) * c
    if op.op == "neg":
        return -x
    if op.op == "clamp":
        if c is not None:
            x = np.maximum(x, c)
        if d is not None:
            x = np.minimum(x, d)
        return x
    if op.op == "relu":
        return np.maximum(x, np.float32(0))
    if op.op == "fma":
        assert c is not None and d is not None
        return fma32(x, c, d)
    if op.op == "sign":
        assert c is not None
        return np.where(x >= 0, c, -c).astype(np.float32)
    if op.op == "affine":
        return (np.asarray(x, np.float64) * c + d).astype(np.float32)
    raise FormatError(f"host op {op.op!r}: no implementation")  # pragma: no cover


def run_host(ops: tuple[HostOp, ...], x: np.ndarray) -> np.ndarray:
    """Apply ``ops`` in order to the batch ``x`` in float32; returns float32.

    A leading :data:`WIDE_OPS` op reads ``x`` in float64 (exact integers up to 2**53)."""
    arr = np.asarray(x)
    wide = bool(ops) and ops[0].op in WIDE_OPS
    if any(op.op in WIDE_OPS for op in ops[1:]):
        raise FormatError("host op 'affine' may only be the first op of a stage")
    if arr.dtype != (np.float64 if wide else np.float32):
        arr = arr.astype(np.float64 if wide else np.float32)
    with np.errstate(all="ignore"):  # torch does not warn on inf/nan either
        for op in ops:
            try:
                arr = np.asarray(_apply(op, arr), dtype=np.float32)
            except ValueError as exc:
                raise DataError(
                    f"host op {op.op} ({op.source}) on input of shape {arr.shape}: {exc}"
                ) from None
    return arr
