"""qnet.hw.options: BuildOptions validation, defaults, and the one reuse-factor rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qnet.errors import BoardError, ConfigError
from qnet.hw.estimator import estimate
from qnet.hw.fixed import FixedType
from qnet.hw.graph import Conv, Dense, HwGraph, Input, ReLU
from qnet.hw.options import (
    DEFAULT_BOARD,
    BuildOptions,
    common_reuse_factors,
    matrix_size,
    valid_reuse_factors,
)

T8 = FixedType(8, 4)


def _mlp() -> HwGraph:
    w1 = np.ones((8, 16), np.int64)
    w2 = np.ones((4, 8), np.int64)
    acc = FixedType(24, 12)
    return HwGraph(
        (
            Input("x", (), (16,), T8),
            Dense("fc0", ("x",), (8,), T8, weight=w1, weight_type=T8, acc_type=acc),
            ReLU("r", ("fc0",), (8,), T8),
            Dense("fc1", ("r",), (4,), T8, weight=w2, weight_type=T8, acc_type=acc),
        )
    )


def test_defaults_and_frozen() -> None:
    opts = BuildOptions()
    assert (opts.board, opts.io_type, opts.reuse_factor, opts.strategy) == (
        DEFAULT_BOARD,
        "io_parallel",
        1,
        "Latency",
    )
    assert opts.frequency_mhz == opts.board_spec.default_clock_mhz
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.io_type = "io_stream"  # type: ignore[misc]


def test_strategy_is_normalised_and_clock_kept_as_given() -> None:
    opts = BuildOptions(strategy="resource", clock_mhz=150)
    assert opts.strategy == "Resource"
    assert opts.frequency_mhz == 150.0
    assert BuildOptions(clock_period_ns=4.0).frequency_mhz == 250.0
    assert BuildOptions(clock_mhz=200).period_ns == 5.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"board": "no-such-board"}, BoardError, "no-such-board"),
        ({"board": 3}, ConfigError, "board"),
        ({"io_type": "io_serial"}, ConfigError, "io_type 'io_serial'"),
        ({"strategy": "fast"}, ConfigError, "strategy 'fast'"),
        ({"reuse_factor": 0}, ConfigError, "reuse factor"),
        ({"reuse_factor": True}, ConfigError, "reuse factor"),
        ({"reuse_factor": {"fc0": -1}}, ConfigError, r"reuse factor \(fc0\)"),
        ({"clock_mhz": 0}, ConfigError, "clock"),
        ({"clock_period_ns": float("nan")}, ConfigError, "clock_period_ns"),
        ({"clock_mhz": 100, "clock_period_ns": 10}, ConfigError, "not both"),
    ],
)
def test_bad_options_name_field_and_value(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        BuildOptions(**kwargs)


def test_per_layer_reuse_factors() -> None:
    opts = BuildOptions(reuse_factor={"default": 2, "fc1": 4})
    assert (opts.reuse_for("fc0"), opts.reuse_for("fc1")) == (2, 4)
    assert opts.per_layer_reuse == {"fc1": 4}
    with pytest.raises(TypeError):
        opts.reuse_factor["fc1"] = 1  # type: ignore[index]
    with pytest.raises(ConfigError, match="unknown layer"):
        BuildOptions(reuse_factor={"nope": 2}).check_layer_names({"fc0"})


def test_estimate_takes_build_options_or_loose_keywords() -> None:
    g = _mlp()
    opts = BuildOptions("zcu104", reuse_factor=2, strategy="Resource", clock_mhz=200)
    by_options = estimate(g, opts)
    by_keywords = estimate(g, "zcu104", reuse_factor=2, strategy="Resource", clock_mhz=200)
    assert by_options == by_keywords
    assert estimate(g) == estimate(g, DEFAULT_BOARD)
    with pytest.raises(ConfigError, match="io_type"):
        estimate(g, opts, io_type="io_stream")


def test_valid_reuse_factors_rule() -> None:
    assert valid_reuse_factors(16, 8) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert 3 not in valid_reuse_factors(16, 8)
    with pytest.raises(ConfigError):
        valid_reuse_factors(0, 4)


def test_matrix_size_and_common_factors() -> None:
    g = _mlp()
    assert [matrix_size(layer) for layer in g.layers] == [None, (16, 8), None, (8, 4)]
    common = common_reuse_factors(g.layers)
    assert common == sorted(set(valid_reuse_factors(16, 8)) & set(valid_reuse_factors(8, 4)))
    conv = Conv(
        "c",
        ("x",),
        (4, 6, 6),
        T8,
        weight=np.ones((4, 3, 3, 3), np.int64),
        weight_type=T8,
        acc_type=FixedType(24, 12),
        stride=(1, 1),
        padding=(1, 1),
    )
    assert matrix_size(conv) == (27, 4)
