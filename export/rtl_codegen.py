"""Verilog and Verilator-binder code generation around a traced da4ml program.

da4ml writes the logic (``src/<name>.v`` or the pipeline stages, ``src/static/*.v``, the
``sim/`` binder sources); this module adds qnet's own top level ``<name>_wrapper`` whose ports
are in the graph's types (``model_inp``: one ``input_type`` mantissa per input element, C
order; ``model_out``: one ``output_type`` mantissa per output element), the binder that
exposes it to ctypes, and ``qnet_rtl.json`` (types, shapes, latency), read back by
:class:`VerilogProject`.

Layout of a project directory::

    src/<name>.v            combinational (or pipelined: src/<name>_stage*.v) logic
    src/<name>_wrapper.v    top level with graph-typed ports
    src/static/*.v          da4ml's primitive modules
    sim/                    Verilator binder sources
    model/comb.json         the traced da4ml program
    qnet_rtl.json           qnet metadata (types, shapes, latency)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qnet.errors import FormatError, InternalError
from qnet.hw.fixed import FixedType
from qnet.hw.graph import HwGraph, Layer

__all__ = ["VerilogProject", "DEFAULT_MODULE_NAME", "write_verilog_sources"]

DEFAULT_MODULE_NAME = "qnet_model"


@dataclass(frozen=True)
class VerilogProject:
    """What :func:`to_verilog` wrote.

    Attributes
    ----------
    path : Path
        The project directory.
    module : str
        Name of the core module; the top level is ``<module>_wrapper``.
    n_inputs, n_outputs : int
        Number of input / output elements (ports hold one mantissa each).
    input_type, output_type : FixedType
        Port formats.
    latency : int
        Clock cycles from input to output (0: combinational).
    estimated_luts : float
        da4ml's own LUT estimate of the logic.
    """

    path: Path
    module: str
    n_inputs: int
    n_outputs: int
    input_type: FixedType
    output_type: FixedType
    latency: int
    estimated_luts: float
    output_shape: tuple[int, ...]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VerilogProject:
        """Read the metadata of a project written by :func:`to_verilog`."""
        path = Path(path)
        meta_file = path / "qnet_rtl.json"
        if not meta_file.is_file():
            raise FormatError(f"{path}: not a qnet Verilog project (no qnet_rtl.json)")
        meta = json.loads(meta_file.read_text())
        return cls(
            path=path,
            module=meta["module"],
            n_inputs=int(meta["n_inputs"]),
            n_outputs=int(meta["n_outputs"]),
            input_type=FixedType.parse(meta["input_type"]),
            output_type=FixedType.parse(meta["output_type"]),
            latency=int(meta["latency"]),
            estimated_luts=float(meta["estimated_luts"]),
            output_shape=tuple(meta["output_shape"]),
        )

    def verilog_files(self) -> list[Path]:
        """Synthesis sources: the static primitives first, then the generated modules."""
        static = sorted((self.path / "src" / "static").glob("*.v"))
        gen = sorted(p for p in (self.path / "src").glob("*.v"))
        return static + gen


def _uniform_out_layout(comb_out_qint: list[Any]) -> tuple[int, int, int]:
    from da4ml.types import minimal_kif

    ks, is_, fs = zip(*map(minimal_kif, comb_out_qint), strict=True)
    return int(max(ks)), int(max(is_)), int(max(fs))


def _top_wrapper(
    module: str,
    n_in: int,
    in_type: FixedType,
    n_out: int,
    out_type: FixedType,
    u_kif: tuple[int, int, int],
    pipelined: bool,
) -> str:
    """Top level ``<module>_wrapper`` with ports in the graph's types around da4ml's uniform wrapper."""
    uk, ui, uf = u_kif
    u_bw = uk + ui + uf
    shift = out_type.frac - uf
    ext = out_type.width - u_bw - shift
    if shift < 0 or ext < 0:
        raise InternalError(
            f"the traced outputs (k={uk}, i={ui}, f={uf}) do not fit the output type {out_type}"
        )
    w_in, w_out = in_type.width, out_type.width
    lines = []
    for n in range(n_out):
        if u_bw == 0:
            lines.append(f"    assign model_out[{n * w_out + w_out - 1}:{n * w_out}] = {w_out}'b0;")
            continue
        lo = n * u_bw
        msb = f"core_out[{lo + u_bw - 1}]" if uk else "1'b0"
        parts = []
        if ext:
            parts.append(f"{{{ext}{{{msb}}}}}")
        parts.append(f"core_out[{lo + u_bw - 1}:{lo}]")
        if shift:
            parts.append(f"{shift}'b0")
        lines.append(
            f"    assign model_out[{n * w_out + w_out - 1}:{n * w_out}] = {{{', '.join(parts)}}};"
        )
    clk_port = "\n    input clk," if pipelined else ""
    clk_bind = "\n        .clk(clk)," if pipelined else ""
    core_decl = (
        f"    wire [{max(n_out * u_bw, 1) - 1}:0] core_out;\n"
        if u_bw
        else "    // every output is constant zero\n"
    )
    inst = (
        f"    {module}_uniform core ({clk_bind}\n        .model_inp(model_inp),\n        .model_out(core_out)\n    );\n"
        if u_bw
        else ""
    )
    body = "\n".join(lines)
    return f"""`timescale 1 ns / 1 ps
// qnet top level: model_inp holds {n_in} x {in_type} mantissas, model_out {n_out} x {out_type}
// (element n at bits [n*W+W-1 : n*W], C order of the per-sample tensor).
module {module}_wrapper ({clk_port}
    // verilator lint_off UNUSEDSIGNAL
    input [{n_in * w_in - 1}:0] model_inp,
    // verilator lint_on UNUSEDSIGNAL
    output [{n_out * w_out - 1}:0] model_out
);
{core_decl}{inst}
{body}

endmodule
"""


def _binder(module: str, n_in: int, n_out: int, w_in: int, w_out: int, latency: int) -> str:
    ii = 1 if latency else 0
    return f"""#include <cstddef>
#include "binder_util.hh"
#include "V{module}_wrapper.h"

struct {module}_wrapper_config {{
    static const size_t N_inp = {n_in};
    static const size_t N_out = {n_out};
    static const size_t max_inp_bw = {w_in};
    static const size_t max_out_bw = {w_out};
    static const size_t II = {ii};
    static const size_t latency = {latency};
    typedef V{module}_wrapper dut_t;
}};

extern "C" {{
bool openmp_enabled() {{
    return _openmp;
}}

void inference(int32_t *c_inp, int32_t *c_out, size_t n_samples, size_t n_threads) {{
    batch_inference<{module}_wrapper_config>(c_inp, c_out, n_samples, n_threads);
}}
}}
"""


def write_verilog_sources(
    comb: Any,
    graph: HwGraph,
    last: Layer,
    directory: Path,
    *,
    module: str,
    latency_cutoff: float,
    trace_seconds: float,
) -> None:
    """Write the da4ml project of the traced program ``comb`` into ``directory`` (which the
    caller makes atomic), with qnet's top level, binder and ``qnet_rtl.json``."""
    from da4ml.codegen import VerilogModel

    model = VerilogModel(
        comb, f"{module}", directory, latency_cutoff=latency_cutoff, print_latency=False
    )
    model.write()
    pipelined = model._pipe is not None
    latency = len(model._pipe.solutions) if pipelined else 0
    # rename da4ml's uniform-width wrapper; our own top level takes its name
    src = directory / "src"
    da_wrapper = (src / f"{module}_wrapper.v").read_text()
    da_wrapper = da_wrapper.replace(f"module {module}_wrapper ", f"module {module}_uniform ", 1)
    (src / f"{module}_uniform.v").write_text(da_wrapper)
    u_kif = _uniform_out_layout(list(comb.out_qint))
    n_in, n_out = comb.shape
    top = _top_wrapper(module, n_in, graph.input_type, n_out, last.out_type, u_kif, pipelined)
    (src / f"{module}_wrapper.v").write_text(top)
    # the unused table-lookup primitive references a .mem file that does not exist
    lut = src / "static" / "lookup_table.v"
    if lut.exists() and not comb.lookup_tables:
        lut.unlink()
    (directory / "sim" / f"{module}_wrapper_binder.cc").write_text(
        _binder(module, n_in, n_out, graph.input_type.width, last.out_type.width, latency)
    )
    meta = {
        "module": module,
        "top": f"{module}_wrapper",
        "n_inputs": n_in,
        "n_outputs": n_out,
        "input_type": graph.input_type.ap_str(),
        "output_type": last.out_type.ap_str(),
        "input_shape": list(graph.input.out_shape),
        "output_shape": list(last.out_shape),
        "output_layer": last.name,
        "latency": latency,
        "latency_cutoff": latency_cutoff,
        "estimated_luts": float(comb.cost),
        "trace_seconds": round(trace_seconds, 3),
        "da4ml_ops": len(comb.ops),
    }
    (directory / "qnet_rtl.json").write_text(json.dumps(meta, indent=2))
