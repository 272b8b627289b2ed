"""hw/ imports: no cycles (also none hidden in function bodies), no importlib tricks.

``qnet.hw`` may import only NumPy, the standard library, ``qnet.errors`` and itself; its
layer-kind registries are filled by the explicit imports of ``qnet/hw/__init__.py``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

HW = Path(__file__).resolve().parents[2] / "hw"


def _imports(path: Path) -> set[str]:
    """Every ``qnet.*`` module a file imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("qnet")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qnet"):
            out.add(node.module)
            # `from qnet.hw import lstm` imports the submodule qnet.hw.lstm
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _hw_graph() -> dict[str, set[str]]:
    modules = {f"qnet.hw.{p.stem}": p for p in HW.glob("*.py") if p.stem != "__init__"}
    return {name: _imports(path) & set(modules) for name, path in modules.items()}


def test_hw_submodules_import_no_cycle() -> None:
    graph = _hw_graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep] if dep in stack else [node, dep]
                raise AssertionError(f"import cycle in hw/: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_hw_imports_only_errors_and_itself_from_qnet() -> None:
    for path in HW.glob("*.py"):
        outside = {
            m
            for m in _imports(path)
            if m.split(".")[:2] not in (["qnet", "errors"], ["qnet", "hw"])
        }
        assert not outside, f"hw/{path.name} imports {sorted(outside)}"


def test_no_dynamic_imports_in_hw() -> None:
    for path in HW.glob("*.py"):
        text = path.read_text()
        for trick in ("import_module", "find_spec", "__import__("):
            assert trick not in text, f"hw/{path.name} uses {trick}"


def test_registries_are_complete_whatever_is_imported_first() -> None:
    code = (
        "from qnet.hw.graph import LAYER_KINDS\n"
        "from qnet.hw.sim_layers import SIMULATORS\n"
        "assert 'lstm' in LAYER_KINDS, sorted(LAYER_KINDS)\n"
        "assert set(LAYER_KINDS) - {'input'} <= set(SIMULATORS), sorted(LAYER_KINDS)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
