"""Every layer kind x every backend: handled where qnet.hw.kinds says, or refused with a reason.

Fails on a silent gap: a registered layer kind without a spec, a spec naming a handler that no
registry holds (or one in another module), or a registry entry the spec does not list.
Run with ``-s`` to see the table.
"""

from __future__ import annotations

import numpy as np
import pytest

import qnet.export.hls  # noqa: F401  (fills HLS_HANDLERS)
import qnet.export.verilog  # noqa: F401  (fills TRACERS)
from qnet.export.hls_base import HLS_HANDLERS
from qnet.export.rtl_trace import TRACERS
from qnet.hw.cost_hls import ESTIMATORS
from qnet.hw.cost_rtl import RTL_ESTIMATORS
from qnet.hw.graph import LAYER_KINDS
from qnet.hw.kinds import BACKENDS, KINDS, Handled, Refused, Structural, kind_table
from qnet.hw.sim_layers import SIMULATORS

REGISTRIES = {
    "simulate": SIMULATORS,
    "estimate_hls": ESTIMATORS,
    "estimate_rtl": RTL_ESTIMATORS,
    "hls4ml": HLS_HANDLERS,
    "verilog": TRACERS,
}


def test_every_registered_kind_has_a_spec_and_back() -> None:
    assert set(KINDS) == set(LAYER_KINDS), (
        f"kinds without a spec: {sorted(set(LAYER_KINDS) - set(KINDS))}; "
        f"specs without a layer class: {sorted(set(KINDS) - set(LAYER_KINDS))}"
    )
    for kind, spec in KINDS.items():
        assert LAYER_KINDS[kind].__module__ == spec.layer_module, kind


@pytest.mark.parametrize("backend", BACKENDS)
def test_kind_x_backend_has_no_silent_gap(backend: str) -> None:
    registry = REGISTRIES[backend]
    problems = []
    for kind, spec in sorted(KINDS.items()):
        support = spec.support(backend)
        handler = registry.get(kind)
        if isinstance(support, Handled):
            if handler is None:
                problems.append(f"{kind}: spec says {support.module} handles it, none registered")
            elif handler.__module__ != support.module:
                problems.append(
                    f"{kind}: handler in {handler.__module__}, spec names {support.module}"
                )
        elif isinstance(support, Structural | Refused):
            if handler is not None:
                problems.append(
                    f"{kind}: spec says {support}, yet {handler.__module__} registers one"
                )
            if isinstance(support, Refused) and not support.reason.strip():
                problems.append(f"{kind}: refused without a reason")
        else:
            problems.append(f"{kind}: no entry for {backend}")
    unlisted = sorted(set(registry) - set(KINDS))
    if unlisted:
        problems.append(f"registered for kinds without a spec: {unlisted}")
    assert not problems, "\n".join(problems)


def test_print_kind_table() -> None:
    table = kind_table()
    print("\n" + table)
    assert len(table.splitlines()) == len(KINDS) + 1


def test_lstm_estimate_is_real_in_both_flows() -> None:
    """The LSTM is counted (never 0 LUTs) and scales with the sequence length."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "hw"))
    from test_lstm import RC, SAT, _random_layer

    from qnet.hw import estimate
    from qnet.hw.fixed import FixedType
    from qnet.hw.graph import HwGraph, Input

    def graph(steps: int) -> HwGraph:
        layer = _random_layer(np.random.default_rng(0), False, steps)
        return HwGraph((Input("x", (), (steps, 3), FixedType(5, 1, True, RC, SAT)), layer))

    for flow in ("hls", "rtl"):
        one, five = (estimate(graph(t), "pynq-z2", flow=flow) for t in (1, 5))
        assert not one.warnings and not five.warnings, (one.warnings, five.warnings)
        lstm1, lstm5 = one.layers[1], five.layers[1]
        assert lstm1.lut > 0 and lstm1.mults > 0, lstm1
        assert lstm5.lut > 4 * lstm1.lut, (lstm1.lut, lstm5.lut)
    hls5 = estimate(graph(5), "pynq-z2").layers[1]
    assert hls5.latency_cycles > 5 and hls5.dsp + hls5.lut_mults > 0
