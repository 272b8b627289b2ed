"""``qnet export`` / ``qnet verify`` end to end on a small checkpoint."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=UserWarning)
torch = pytest.importorskip("torch")
pytest.importorskip("hls4ml")

from qnet.checkpoint import save_checkpoint  # noqa: E402
from qnet.cli import main  # noqa: E402
from qnet.errors import OutputExistsError  # noqa: E402
from qnet.hw.graph import HwGraph  # noqa: E402
from qnet.models import ModelConfig, build_model  # noqa: E402
from qnet.projects import export_project  # noqa: E402


def run(argv: list[str]) -> int:
    """Run the CLI; the exit code (typer exits 0 by SystemExit on success)."""
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = ModelConfig(kind="mlp", in_shape=(24,), num_classes=10, w_bits=4, a_bits=4, hidden=(16,))
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(64, 24))
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    save_checkpoint(path, model, cfg)
    return path


def test_export_writes_project_atomically_and_refuses_overwrite(ckpt, tmp_path) -> None:
    out = tmp_path / "prj"
    summary = export_project(ckpt, out, board="pynq-z2", reuse_factor=1, formats=("hls4ml",))
    assert {"hls4ml_prj", "hwgraph.npz", "qnet_export.json"} <= set(summary.files)
    info = json.loads((out / "qnet_export.json").read_text())
    assert info["board"] == "pynq-z2" and info["part"] == "xc7z020clg400-1"
    assert info["backend"] == "VivadoAccelerator" and info["io_type"] == "io_parallel"
    graph = HwGraph.load(out / "hwgraph.npz")
    assert info["input_type"] == str(graph.input_type)
    assert (out / "hls4ml_prj" / "firmware" / "qnet.cpp").is_file()
    assert (out / "hls4ml_prj" / "tb_data" / "tb_output_predictions.dat").is_file()
    # no temporary siblings left behind, no temp path inside the project
    assert [p.name for p in tmp_path.iterdir()] == ["prj"]
    assert ".tmp" not in (out / "hls4ml_prj" / "hls4ml_config.yml").read_text()
    with pytest.raises(OutputExistsError, match="--force"):
        export_project(ckpt, out, formats=("hls4ml",))
    (out / "marker").write_text("old")
    export_project(ckpt, out, io_type="io_stream", formats=("hls4ml",), force=True)
    assert not (out / "marker").exists()
    assert json.loads((out / "qnet_export.json").read_text())["io_type"] == "io_stream"


def test_failed_export_leaves_nothing(ckpt, tmp_path) -> None:
    out = tmp_path / "prj"
    with pytest.raises(Exception, match="reuse factor"):
        export_project(ckpt, out, reuse_factor=7, formats=("hls4ml",))
    assert list(tmp_path.iterdir()) == []


def test_cli_export_refuses_nonempty_out(ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "prj"
    out.mkdir()
    (out / "x").write_text("1")
    assert run(["export", str(ckpt), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.csim
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml C simulation")
def test_cli_verify_prints_table_and_exits_zero(ckpt, capsys) -> None:
    assert run(["verify", str(ckpt), "--n", "500"]) == 0
    text = capsys.readouterr().out
    assert "simulator vs csim" in text and "500/500" in text and "ALL EXACT" in text


def test_cli_export_summary(ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "prj"
    assert (
        run(["export", str(ckpt), "--out", str(out), "--format", "hls4ml", "--reuse-factor", "2"])
        == 0
    )
    text = capsys.readouterr().out
    assert "pynq-z2" in text and "reuse factor 2" in text
    assert np.isfinite(json.loads((out / "qnet_export.json").read_text())["clock_period_ns"])


def test_cli_verify_requested_executors_that_cannot_run(ckpt, monkeypatch, capsys) -> None:
    """--rtl without Verilator (and csim without g++): exit 3 naming the tool; with
    --allow-missing the table says NOT VERIFIED and the exit code is still non-zero."""
    from qnet.errors import ToolNotFoundError
    from qnet.export import verilog
    from qnet.export.hls_base import HlsExport

    def missing(*args, **kwargs):
        raise ToolNotFoundError("the tool is not installed")

    monkeypatch.setattr(verilog, "verilator_env", missing)
    monkeypatch.setattr(HlsExport, "compile", missing)
    assert run(["verify", str(ckpt), "--n", "20", "--rtl"]) == 3
    assert "executor cannot run" in capsys.readouterr().err
    assert run(["verify", str(ckpt), "--n", "20", "--rtl", "--allow-missing"]) == 2
    captured = capsys.readouterr()
    assert "csim: NOT VERIFIED" in captured.out and "rtl: NOT VERIFIED" in captured.out
    assert "brevitas vs simulator" in captured.out and "ALL EXACT" not in captured.out
    assert "NOT VERIFIED" in captured.err


def test_write_export_project_needs_only_a_graph(ckpt, tmp_path) -> None:
    """qnet.export writes a project from a HwGraph alone (no model, no data set)."""
    from qnet.export.project import write_export_project
    from qnet.sources import load_graph

    graph = load_graph(ckpt)
    summary = write_export_project(graph, tmp_path / "prj", formats=("hls4ml", "qonnx"))
    assert "model.qonnx.onnx" not in summary.files
    assert any("no Brevitas model" in note for note in summary.notes)
    tb = tmp_path / "prj" / "hls4ml_prj" / "tb_data" / "tb_input_features.dat"
    assert len(tb.read_text().splitlines()) == 100
