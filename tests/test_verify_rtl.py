"""verify's first-diverging-layer report for the RTL executor.

The RTL is generated from the traced da4ml logic; on a mismatch ``verify`` traces that logic
layer by layer (``qnet.export.verilog.trace_layers``) against the simulator. Here the logic is
traced from a graph whose first dense layer keeps 3 fewer accumulator fractional bits (a cast
that rounds), while the simulator keeps the correct graph: the report must name that layer.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "export"))
from hw_graphs import make_mlp, random_inputs  # noqa: E402

from qnet.hw.fixed import FixedType, Overflow, Rounding  # noqa: E402
from qnet.verification import _first_layer_divergence  # noqa: E402

pytestmark = [
    pytest.mark.rtl,
    pytest.mark.skipif(importlib.util.find_spec("da4ml") is None, reason="da4ml is not installed"),
]


def test_rtl_divergence_names_the_altered_layer() -> None:
    from qnet.export.verilog import trace_layers
    from qnet.hw.simulator import simulate

    graph = make_mlp(4, seed=3, n_in=12, hidden=(8,))
    target = graph["fc0"]
    acc = target.acc_type
    coarse = FixedType(acc.width - 3, acc.integer, True, Rounding.TRN, Overflow.WRAP)
    broken = graph.replace("fc0", out_type=coarse)
    x = random_inputs(graph, 300)
    # the altered logic really differs at the output (else the test could not fail)
    good_out = np.asarray(simulate(graph, x))
    bad_out = trace_layers(broken, x)[graph.output.name]
    bad = np.where(~(good_out == bad_out).reshape(len(x), -1).all(axis=1))[0]
    assert bad.size > 0
    div = _first_layer_divergence(graph, lambda xs: trace_layers(broken, xs), x, bad)
    assert div is not None and div.layer == "fc0"
    want = simulate(graph, x[div.sample : div.sample + 1], trace=True)["fc0"]
    assert want[(0, *div.index)] == div.value_a != div.value_b
