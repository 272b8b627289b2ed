"""qnet.fit (qnet.fitting): build options chosen from the estimator, checked by brute force."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest

from qnet.errors import ConfigError
from qnet.fitting import fit, load_build_config
from qnet.hw.estimator import estimate
from qnet.hw.options import IO_TYPES, STRATEGIES, valid_reuse_factors

sys.path.insert(0, str(Path(__file__).parent / "export"))
from hw_graphs import make_convnet, make_mlp  # noqa: E402

_BOARD = """
name = "tiny-test"
vendor = "test"
family = "zynq7000"
part = "xc7z020clg400-1"
default_clock_mhz = 100.0
hls4ml_backend = "Vivado"
interface = "axi-stream"

[resources]
lut = {lut}
ff = {ff}
dsp = {dsp}
bram_18k = {bram}
uram = 0
"""


def _board(tmp_path: Path, lut: int, ff: int, dsp: int, bram: int = 10) -> Path:
    path = tmp_path / f"tiny_{lut}_{ff}_{dsp}_{bram}.toml"
    path.write_text(_BOARD.format(lut=lut, ff=ff, dsp=dsp, bram=bram))
    return path


def _all_designs(graph, board):
    """Every io_type x strategy x per-layer valid reuse factor, estimated."""
    names, options = [], []
    for layer in graph.layers:
        if layer.kind in ("dense", "conv"):
            n_out = layer.weight.shape[0]
            names.append(layer.name)
            options.append(valid_reuse_factors(layer.weight.reshape(n_out, -1).shape[1], n_out))
    for io_type, strategy in itertools.product(IO_TYPES, STRATEGIES):
        for combo in itertools.product(*options):
            yield estimate(graph, board, io_type, dict(zip(names, combo, strict=True)), strategy)


def _within(est, margin: float) -> bool:
    return all(u <= 100 * (1 - margin) + 1e-9 for u in est.utilisation.values())


def test_fit_is_as_fast_as_brute_force(tmp_path: Path) -> None:
    graph = make_mlp(4, n_in=16, hidden=(8,))
    board = _board(tmp_path, lut=3000, ff=3000, dsp=4)
    result = fit(graph, board, margin=0.2)
    assert result.fits, result.message
    est = result.estimate
    assert _within(est, 0.2)
    for layer, rf in result.options["reuse_factor"].items():
        n_out = graph[layer].weight.shape[0]
        assert rf in valid_reuse_factors(graph[layer].weight.reshape(n_out, -1).shape[1], n_out)
    again = estimate(
        graph,
        board,
        result.options["io_type"],
        result.options["reuse_factor"],
        result.options["strategy"],
    )
    assert again.to_dict() == est.to_dict()
    fitting = [e for e in _all_designs(graph, board) if _within(e, 0.2)]
    assert fitting and all(e.fits for e in fitting)
    best = max(e.throughput_per_s for e in fitting)
    assert est.throughput_per_s == best
    # the whole-board design is faster: the margin matters
    loose = fit(graph, board, margin=0.0)
    assert loose.estimate.throughput_per_s >= best


def test_fit_target_throughput_is_cheapest_reaching_it(tmp_path: Path) -> None:
    graph = make_mlp(4, n_in=16, hidden=(8,))
    board = _board(tmp_path, lut=5000, ff=10000, dsp=40)
    fastest = fit(graph, board)
    target = fastest.estimate.throughput_per_s / 5
    result = fit(graph, board, target_throughput=target)
    assert result.fits and result.estimate.throughput_per_s >= target
    reaching = [
        e for e in _all_designs(graph, board) if _within(e, 0.2) and e.throughput_per_s >= target
    ]
    cheapest = min(max(e.utilisation.values()) for e in reaching)
    assert max(result.estimate.utilisation.values()) == pytest.approx(cheapest)
    assert result.peak_utilisation < fastest.peak_utilisation


def test_nothing_fits_names_the_closest(tmp_path: Path) -> None:
    graph = make_convnet(2, 4)
    board = _board(tmp_path, lut=300, ff=300, dsp=1, bram=0)
    result = fit(graph, board)
    assert not result.fits
    assert "nothing fits" in result.message and "closest" in result.message
    # the closest is the cheapest design of all (lowest peak utilisation)
    designs = fit(graph, board, margin=0.0)
    assert not designs.fits
    # a reachable target that the board cannot hold: the fastest fitting design is named
    big = _board(tmp_path, lut=200_000, ff=400_000, dsp=900, bram=500)
    res = fit(graph, big, target_throughput=5e7)
    assert not res.fits and "closest is the fastest that fits" in res.message


def test_fit_rejects_bad_options(tmp_path: Path) -> None:
    graph = make_mlp(4, n_in=16, hidden=(8,))
    for kwargs, match in (
        ({"margin": 1.0}, "margin"),
        ({"margin": -0.1}, "margin"),
        ({"target_throughput": 0}, "target throughput"),
        ({"target_throughput": 1e12}, "below one cycle"),
        ({"io_types": ["io_serial"]}, "io_serial"),
        ({"clock_mhz": -5}, "clock"),
    ):
        with pytest.raises(ConfigError, match=match):
            fit(graph, "pynq-z2", **kwargs)
    with pytest.raises(ConfigError, match="open-flow"):
        fit(graph, "icebreaker")


def test_config_file_round_trip_and_errors(tmp_path: Path) -> None:
    graph = make_mlp(4, n_in=16, hidden=(8,))
    result = fit(graph, "pynq-z2", target_throughput=1e6)
    path = result.write(tmp_path / "fit.json")
    opts = load_build_config(path)
    assert opts == result.build_options and opts.to_dict() == result.options
    assert opts.clock_mhz == 100.0 and opts.per_layer_reuse == result.options["reuse_factor"]
    data = json.loads(path.read_text())
    assert data["fit"]["fits"] is True and data["fit"]["margin"] == 0.2
    # fit.json is a BuildOptions serialisation plus the record
    from qnet.hw.options import BuildOptions

    assert BuildOptions.from_dict({k: data[k] for k in opts.to_dict()}) == opts
    bad = tmp_path / "bad.json"
    for text, match in (
        ("{", "not a JSON"),
        ('{"format": "other"}', "format"),
        ('{"format": "qnet-build-config/1", "reuse_factor": {"fc0": 0}}', "reuse factor \\(fc0\\)"),
        ('{"format": "qnet-build-config/1", "clock_mhz": "fast"}', "clock"),
        ('{"format": "qnet-build-config/1", "board": 3}', "board"),
        ('{"format": "qnet-build-config/1", "io_typ": "io_stream"}', "io_typ"),
        ('{"format": "qnet-build-config/1", "strategy": "fast"}', "strategy"),
    ):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=match) as exc:
            load_build_config(bad)
        assert "bad.json" in str(exc.value)
    with pytest.raises(ConfigError, match="no such file"):
        load_build_config(tmp_path / "missing.json")


def _cli(*args: str) -> int:
    from qnet.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_fit_then_estimate_with_config(tmp_path: Path, capsys) -> None:

    graph_path = make_mlp(4, n_in=16, hidden=(32,)).save(tmp_path / "g.npz")
    out = tmp_path / "fit.json"
    code = _cli(
        "fit",
        str(graph_path),
        "--board",
        "pynq-z2",
        "--target-throughput",
        "1e6",
        "--out",
        str(out),
    )
    opts = load_build_config(out).to_dict()
    assert code == 0 and max(opts["reuse_factor"].values()) > 1
    capsys.readouterr()
    assert _cli("estimate", str(graph_path), "--config", str(out), "--json") == 0
    est = json.loads(capsys.readouterr().out)
    assert est["reuse_factor"] == {"default": 1, **opts["reuse_factor"]}
    assert est["io_type"] == opts["io_type"] and est["strategy"] == opts["strategy"]
    # explicit options override the file
    assert (
        _cli("estimate", str(graph_path), "--config", str(out), "--reuse-factor", "1", "--json")
        == 0
    )
    assert json.loads(capsys.readouterr().out)["reuse_factor"] == 1
    # nothing fits: exit 2, nothing written
    big = make_convnet(2, 4).save(tmp_path / "c.npz")
    tiny = _board(tmp_path, lut=300, ff=300, dsp=1, bram=0)
    code = _cli("fit", str(big), "--board", str(tiny), "--out", str(tmp_path / "no.json"))
    assert code == 2 and not (tmp_path / "no.json").exists()
    assert "closest" in capsys.readouterr().err


def test_fit_is_public_api() -> None:
    import qnet
    import qnet.fitting

    assert qnet.fit is qnet.fitting.fit and callable(qnet.fit)


@pytest.mark.csim
def test_fit_config_exports_and_verifies_exactly(tmp_path: Path) -> None:
    """fit.json drives export (per-layer reuse factors in the firmware) and verify (exact)."""
    import re

    from qnet.data import load_dataset
    from qnet.evaluation import lower_checkpoint
    from qnet.train import TrainConfig, default_model_config, train

    data = load_dataset("digits", "mlp")
    cfg = default_model_config("mlp", data, hidden=(16,))
    ckpt = train(cfg, TrainConfig(epochs=1), data, tmp_path / "run", quiet=True).checkpoint_path
    result = fit(lower_checkpoint(ckpt), "pynq-z2", target_throughput=2e6)
    assert result.fits and max(result.options["reuse_factor"].values()) > 1
    config = result.write(tmp_path / "fit.json")
    prj = tmp_path / "prj"
    assert _cli("export", str(ckpt), "--config", str(config), "--out", str(prj)) == 0
    params = (prj / "hls4ml_prj" / "firmware" / "parameters.h").read_text()
    written = {int(v) for v in re.findall(r"reuse_factor = (\d+);", params)}
    assert set(result.options["reuse_factor"].values()) <= written
    strategies = set(re.findall(r"strategy = nnet::(\w+);", params))
    assert strategies == {result.options["strategy"].lower()}
    assert _cli("verify", str(ckpt), "--config", str(config), "--n", "200") == 0


def test_estimate_input_mux_is_bounded_by_n_in() -> None:
    """Past R = n_in a lane's input mux stays n_in:1 (hls4ml walks the inputs cyclically), so
    fewer lanes cost fewer LUTs; fit relies on that to shrink big dense layers."""
    graph = make_mlp(4, n_in=256, hidden=())
    n_in, n_out = 256, 10
    lut = {
        rf: estimate(graph, "zcu104", "io_parallel", {"out": rf}, "Resource").layers[-1].lut
        for rf in (n_in, n_in * n_out)
    }
    assert lut[n_in * n_out] * 5 < lut[n_in]
