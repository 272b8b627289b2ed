"""``qnet.hw.simulate`` / ``qnet.hw.estimate`` are the functions whatever was imported before."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest


@pytest.mark.parametrize(
    "first",
    ["qnet.hw.simulator", "qnet.hw.estimator", "qnet.hw.lstm", "qnet.hw.graph", "qnet.hw"],
)
def test_functions_survive_any_import_order(first: str) -> None:
    code = (
        f"import {first}\n"
        "import types, qnet.hw, qnet.hw.simulator, qnet.hw.estimator\n"
        "from qnet.hw import estimate, simulate\n"
        "assert isinstance(simulate, types.FunctionType), simulate\n"
        "assert isinstance(estimate, types.FunctionType), estimate\n"
        "assert qnet.hw.simulate is qnet.hw.simulator.simulate\n"
        "assert qnet.hw.estimate is qnet.hw.estimator.estimate\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_estimate_is_callable_in_process() -> None:
    import qnet.hw
    import qnet.hw.estimator  # noqa: F401
    import qnet.hw.simulator  # noqa: F401

    assert isinstance(qnet.hw.estimate, types.FunctionType)
    assert isinstance(qnet.hw.simulate, types.FunctionType)
