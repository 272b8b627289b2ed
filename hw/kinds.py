"""One spec per HwGraph layer kind: what every backend does with it, or why it refuses.

A layer kind means something to five backends: the bit-accurate simulator, the two cost
models (hls4ml flow, RTL flow) and the two exports (hls4ml, Verilog through da4ml). Each
backend keeps its implementations in its own explicit registry (``SIMULATORS``,
``ESTIMATORS``, ``RTL_ESTIMATORS``, ``qnet.export.hls_base.HLS_HANDLERS``,
``qnet.export.rtl_trace.TRACERS``); this table is the one place that says, per kind, which
module implements each backend, how, or why the backend refuses it. ``hw/`` may not import
``export/``, so export modules are named, not imported: ``tests/test_kinds.py`` imports them
and fails when a registry and this table disagree (a kind without a spec, a spec without a
handler, a handler the spec does not list, a handler in another module than named).

To add a kind: its layer class (``hw/layers.py`` or its own module imported by
``qnet/hw/__init__.py``), a :class:`KindSpec` here, and a handler or a :class:`Refused`
reason for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from qnet.errors import ConfigError

__all__ = ["BACKENDS", "KINDS", "Handled", "KindSpec", "Refused", "Structural", "kind_table"]

#: The backends every layer kind is specified for, in table order.
BACKENDS = ("simulate", "estimate_hls", "estimate_rtl", "hls4ml", "verilog")


@dataclass(frozen=True)
class Handled:
    """The backend implements the kind: a handler in ``module``'s registry does ``how``."""

    module: str
    how: str


@dataclass(frozen=True)
class Structural:
    """The backend's driver handles the kind itself (no registry entry): ``how``."""

    module: str
    how: str


@dataclass(frozen=True)
class Refused:
    """The backend refuses the kind, with the reason users see."""

    reason: str


Support = Handled | Structural | Refused

_SIM = "qnet.hw.sim_layers"
_HLS_COST = "qnet.hw.cost_hls"
_RTL_COST = "qnet.hw.cost_rtl"
_HLS = "qnet.export.hls_layers"
_V = "qnet.export.rtl_trace"


@dataclass(frozen=True)
class KindSpec:
    """What one layer kind means to every backend (see :data:`BACKENDS`)."""

    kind: str
    layer_module: str
    simulate: Support
    estimate_hls: Support
    estimate_rtl: Support
    hls4ml: Support
    verilog: Support

    def support(self, backend: str) -> Support:
        """The entry of one backend (:class:`ConfigError` for an unknown backend name)."""
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        support: Support = getattr(self, backend)
        return support


def _elementwise(kind: str, sim: str, cost: str, hls: str, verilog: str) -> KindSpec:
    return KindSpec(
        kind,
        "qnet.hw.layers",
        simulate=Handled(_SIM, sim),
        estimate_hls=Handled(_HLS_COST, cost),
        estimate_rtl=Handled(_RTL_COST, "logic bits per output bit x family LUT/bit"),
        hls4ml=Handled(_HLS, hls),
        verilog=Handled(_V, verilog),
    )


#: layer kind -> its spec
KINDS: dict[str, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec(
            "input",
            "qnet.hw.layers",
            simulate=Handled(_SIM, "quantise the float input by the input FixedType"),
            estimate_hls=Handled(_HLS_COST, "input port, no logic"),
            estimate_rtl=Handled(_RTL_COST, "wiring"),
            hls4ml=Handled(_HLS, "hls4ml Input layer with the input precision"),
            verilog=Structural(_V, "the module's input port (the trace starts from it)"),
        ),
        _elementwise(
            "quant",
            "requantise (round, saturate) to out_type",
            "rounding carry chain + saturation mux per bit",
            "linear activation with the result precision (the cast)",
            "exact cast of every value",
        ),
        _elementwise(
            "relu",
            "max(x, 0) then cast",
            "sign test + mux per bit",
            "ReLU activation with the result precision",
            "da4ml relu + cast",
        ),
        KindSpec(
            "flatten",
            "qnet.hw.layers",
            simulate=Handled(_SIM, "reshape (channels-first order)"),
            estimate_hls=Handled(_HLS_COST, "wiring"),
            estimate_rtl=Handled(_RTL_COST, "wiring"),
            hls4ml=Handled(_HLS, "layout only; a flatten that changes the type is refused"),
            verilog=Handled(_V, "reorder the traced values"),
        ),
        KindSpec(
            "dense",
            "qnet.hw.layers",
            simulate=Handled(_SIM, "exact integer matmul in acc_type, then cast"),
            estimate_hls=Handled(_HLS_COST, "multipliers (free/LUT/DSP) + adder tree, reuse"),
            estimate_rtl=Handled(_RTL_COST, "shift-add adders of the constant matrix"),
            hls4ml=Handled(_HLS, "hls4ml Dense with weight/bias/accum/result precisions"),
            verilog=Handled(_V, "da4ml constant-matrix product (CMVM) + cast"),
        ),
        KindSpec(
            "conv",
            "qnet.hw.layers",
            simulate=Handled(_SIM, "exact im2col matmul in acc_type, then cast"),
            estimate_hls=Handled(
                _HLS_COST, "dense rule per output position (as exported), line buffers"
            ),
            estimate_rtl=Handled(
                _RTL_COST, "dense rule per position, padding and zero (group/dilation) taps dropped"
            ),
            hls4ml=Handled(
                _HLS,
                "hls4ml Conv1D/Conv2D, DepthwiseConv1D/2D for depthwise; dilation as zero "
                "taps (hls4ml's kernels ignore it), other groups block-diagonal",
            ),
            verilog=Handled(_V, "da4ml CMVM per output position and group + cast"),
        ),
        _elementwise(
            "maxpool",
            "window maximum",
            "comparator + mux per bit per comparison",
            "hls4ml MaxPooling1D/2D",
            "comparator tree",
        ),
        _elementwise(
            "avgpool",
            "exact window sum / window size, then cast",
            "adder per bit per window element",
            "hls4ml AveragePooling1D/2D with exact accumulator",
            "adder tree + exact shift + cast",
        ),
        _elementwise(
            "add",
            "exact sum of the two inputs, then cast",
            "adder + cast per bit",
            "hls4ml Merge (Add) with the result precision",
            "adder + cast",
        ),
        KindSpec(
            "concat",
            "qnet.hw.layers",
            simulate=Handled(_SIM, "cast each input to out_type (exact), concatenate"),
            estimate_hls=Handled(_HLS_COST, "wiring (io_parallel), a stream copy (io_stream)"),
            estimate_rtl=Handled(_RTL_COST, "wiring"),
            hls4ml=Handled(_HLS, "hls4ml Concatenate, chained pairwise for more inputs"),
            verilog=Handled(_V, "concatenate the traced values (after the exact casts)"),
        ),
        _elementwise(
            "multithreshold",
            "count the thresholds each value reaches",
            "FINN thresholding: comparator per threshold + counting tree",
            "qnet MultiThreshold extension layer (export/hls_threshold.py)",
            "comparators + popcount",
        ),
        KindSpec(
            "lstm",
            "qnet.hw.lstm",
            simulate=Handled("qnet.hw.lstm", "exact cell: 4 gate matmuls, tables, 3 casts"),
            estimate_hls=Handled(
                "qnet.hw.cost_lstm",
                "T unrolled cells: 4 gate matmuls (dense rule) + ROM tables + 3 products; "
                "io_stream refused as by the export",
            ),
            estimate_rtl=Handled(
                "qnet.hw.cost_lstm", "T unrolled cells: shift-add gate matmuls + ROMs + products"
            ),
            hls4ml=Handled(
                _HLS, "qnet LSTM extension layer (export/hls_lstm.py), io_parallel only"
            ),
            verilog=Handled(_V, "T unrolled cells, tables as ROMs (da4ml lookup)"),
        ),
    )
}


def kind_table() -> str:
    """The kind x backend table as text (``module: how`` or ``REFUSED: reason``)."""
    header = ["kind", *BACKENDS]
    rows = [header]
    for kind, spec in sorted(KINDS.items()):
        cells = [kind]
        for backend in BACKENDS:
            support = spec.support(backend)
            if isinstance(support, Refused):
                cells.append("REFUSED")
            elif isinstance(support, Structural):
                cells.append(f"driver ({support.module.rsplit('.', 1)[-1]})")
            else:
                cells.append(support.module.rsplit(".", 1)[-1])
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
