"""Vendor-flow wrapper: tool detection, report parsing, resumable steps (with a fake tool)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from qnet.errors import FormatError, ToolNotFoundError
from qnet.export.synth import (
    SynthesisError,
    compare_resources,
    find_csynth_report,
    find_tool,
    parse_csynth_xml,
    synthesize,
)

DATA = Path(__file__).parents[1] / "data"
VIVADO_XML = DATA / "vivado_hls_2019_2_myproject_csynth.xml"
VITIS_XML = DATA / "vitis_hls_2023_2_csynth.xml"
EMPTY_ENV = {"PATH": "/nonexistent"}


def test_parse_vivado_hls_report() -> None:
    r = parse_csynth_xml(VIVADO_XML)
    assert r.resources == {"BRAM_18K": 4, "DSP": 3915, "FF": 49449, "LUT": 88289, "URAM": 0}
    assert (r.latency_best, r.latency_worst, r.interval_min, r.interval_max) == (13, 13, 1, 1)
    assert r.estimated_clock_ns == 4.375 and r.target_clock_ns == 5.0
    assert r.fmax_mhz == pytest.approx(228.571, rel=1e-4)
    assert r.available["DSP"] == 360 and r.part == "xczu3eg-sbva484-1-e"
    assert r.tool_version == "2019.2" and r.top == "myproject"


def test_parse_vitis_hls_report_with_undef() -> None:
    r = parse_csynth_xml(VITIS_XML)
    assert r.resources["DSP"] == 5414 and r.resources["LUT"] == 245466
    assert r.latency_best == 1044 and r.latency_worst is None
    assert r.interval_min == 1028 and r.interval_max is None


def test_parse_errors_name_file_and_element(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<profile><broken></profile>")
    with pytest.raises(FormatError, match="bad.xml: not a readable csynth XML"):
        parse_csynth_xml(bad)
    text = VIVADO_XML.read_text().replace("<EstimatedClockPeriod>4.375</EstimatedClockPeriod>", "")
    missing = tmp_path / "missing.xml"
    missing.write_text(text)
    with pytest.raises(FormatError, match="missing.xml.*EstimatedClockPeriod is missing"):
        parse_csynth_xml(missing)
    nolut = tmp_path / "nolut.xml"
    nolut.write_text(VIVADO_XML.read_text().replace("<LUT>88289</LUT>", ""))
    with pytest.raises(FormatError, match="Resources has no LUT"):
        parse_csynth_xml(nolut)


def test_tool_not_found_message(tmp_path: Path) -> None:
    with pytest.raises(ToolNotFoundError) as info:
        find_tool(("vivado_hls", "vitis_hls"), vivado_path=tmp_path, env=EMPTY_ENV)
    msg = str(info.value)
    assert "vivado_hls / vitis_hls not found" in msg
    assert f"--vivado-path {tmp_path}" in msg and "$XILINX_VIVADO (unset)" in msg
    assert "PATH" in msg and "QNET_VIVADO_PATH" in msg
    assert info.value.exit_code == 3


def _fake_tool(directory: Path, name: str, fixture: Path, fail: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text(
        "#!/bin/sh\n"
        'echo "$@" >> "$PWD/calls.log"\n'
        + ("exit 7\n" if fail else "")
        + 'case "$*" in *synth=1*)\n'
        "  mkdir -p myproject_prj/solution1/syn/report\n"
        f"  cp {fixture} myproject_prj/solution1/syn/report/myproject_csynth.xml;;\n"
        "esac\n"
    )
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return tool


def test_find_tool_search_order(tmp_path: Path) -> None:
    a = _fake_tool(tmp_path / "a" / "bin", "vitis_hls", VITIS_XML)
    b = _fake_tool(tmp_path / "b", "vivado_hls", VIVADO_XML)
    env = {"XILINX_VITIS": str(tmp_path / "a"), "PATH": str(tmp_path / "b")}
    assert find_tool(("vivado_hls", "vitis_hls"), env=env) == a  # env var before PATH
    assert find_tool(("vivado_hls", "vitis_hls"), env={"PATH": str(tmp_path / "b")}) == b
    assert find_tool(("vivado_hls",), vivado_path=b, env=EMPTY_ENV) == b  # the executable itself


def _project(tmp_path: Path, backend: str = "vivado") -> Path:
    prj = tmp_path / "prj"
    hls = prj / "hls4ml_prj"
    hls.mkdir(parents=True)
    (hls / "build_prj.tcl").write_text("# hls4ml build script\n")
    (hls / "project.tcl").write_text(f'set project_name "myproject"\nset backend "{backend}"\n')
    (prj / "qnet_export.json").write_text(
        json.dumps(
            {"board": "pynq-z2", "io_type": "io_parallel", "reuse_factor": 1, "strategy": "Latency"}
        )
    )
    return prj


def test_synthesize_runs_steps_resumably(tmp_path: Path) -> None:
    prj = _project(tmp_path)
    _fake_tool(tmp_path / "xilinx" / "bin", "vivado_hls", VIVADO_XML)
    env = {"QNET_VIVADO_PATH": str(tmp_path / "xilinx"), "PATH": os.environ["PATH"]}
    lines: list[str] = []
    res = synthesize(prj, env=env, log=lines.append)
    assert [s.name for s in res.steps] == ["csynth", "export"]
    assert not any(s.skipped for s in res.steps)
    assert res.report is not None and res.report.resources["LUT"] == 88289
    calls = (prj / "hls4ml_prj" / "calls.log").read_text().splitlines()
    assert (
        calls[0]
        == "-f build_prj.tcl reset=1 csim=0 synth=1 cosim=0 validation=0 export=0 vsynth=0 fifo_opt=0"
    )
    assert "export=1" in calls[1]
    assert (prj / ".qnet_synth" / "csynth.done").is_file()
    assert any(line.startswith("[csynth] done in") for line in lines)

    res2 = synthesize(prj, env=env, log=lines.append)  # resumed: nothing re-run
    assert all(s.skipped for s in res2.steps)
    assert len((prj / "hls4ml_prj" / "calls.log").read_text().splitlines()) == 2

    res3 = synthesize(prj, env=env, force=True, cosim=True, quiet=True)
    assert [s.name for s in res3.steps] == ["csynth", "cosim", "export"]
    assert not any(s.skipped for s in res3.steps)
    assert len((prj / "hls4ml_prj" / "calls.log").read_text().splitlines()) == 5


def test_synthesize_failure_and_missing_tool(tmp_path: Path) -> None:
    prj = _project(tmp_path)
    with pytest.raises(ToolNotFoundError, match="vivado_hls / vitis_hls not found"):
        synthesize(prj, env=EMPTY_ENV, quiet=True)
    _fake_tool(tmp_path / "x", "vivado_hls", VIVADO_XML, fail=True)
    with pytest.raises(SynthesisError, match=r"step 'csynth' failed \(exit status 7\).*csynth.log"):
        synthesize(prj, vivado_path=tmp_path / "x", env=EMPTY_ENV, quiet=True)
    assert not (prj / ".qnet_synth" / "csynth.done").exists()


def test_vitis_backend_writes_build_options(tmp_path: Path) -> None:
    prj = _project(tmp_path, backend="vitis")
    _fake_tool(tmp_path / "v", "vitis_hls", VITIS_XML)
    # the fake tool sees no synth=1 in argv for Vitis; it reads build_opt.tcl instead
    tool = tmp_path / "v" / "vitis_hls"
    tool.write_text(
        tool.read_text()
        .replace('case "$*" in', 'case "$(cat build_opt.tcl)" in')
        .replace("*synth=1*", '*"synth      1"*')
    )
    res = synthesize(
        prj, vivado_path=tmp_path / "v", env={"PATH": "/usr/bin:/bin"}, export=False, quiet=True
    )
    assert res.report is not None and res.report.resources["DSP"] == 5414
    assert "synth      1" in (prj / "hls4ml_prj" / "build_opt.tcl").read_text()


def test_bad_project_dirs(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such project directory"):
        synthesize(tmp_path / "nope", env=EMPTY_ENV)
    (tmp_path / "p").mkdir()
    with pytest.raises(FormatError, match="qnet_export.json: missing"):
        synthesize(tmp_path / "p", env=EMPTY_ENV)
    prj = _project(tmp_path)
    assert find_csynth_report(prj / "hls4ml_prj") is None


def test_compare_resources() -> None:
    rows = compare_resources({"LUT": 100, "DSP": 5}, {"LUT": 50, "DSP": 0, "FF": 3})
    assert rows == [("LUT", 100.0, 50.0, 2.0), ("DSP", 5.0, 0.0, None)]


def test_cli_synth_exit_code_3_without_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from qnet.cli import main
    from qnet.hw.fixed import FixedType
    from qnet.hw.graph import Dense, HwGraph, Input

    prj = _project(tmp_path)
    t = FixedType(8, 4)
    HwGraph(
        (
            Input("x", (), (4,), t),
            Dense(
                "fc",
                ("x",),
                (2,),
                t,
                weight=np.ones((2, 4), np.int64),
                weight_type=t,
                acc_type=FixedType(16, 8),
            ),
        )
    ).save(prj / "hwgraph.npz")
    for var in ("QNET_VIVADO_PATH", "XILINX_VITIS", "XILINX_HLS", "XILINX_VIVADO"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SystemExit) as info:
        main(["synth", str(prj)])
    assert info.value.code == 3
    assert "vivado_hls / vitis_hls not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["estimate", str(prj), "--json"])
    assert info.value.code in (0, None)
    assert '"board": "pynq-z2"' in capsys.readouterr().out
