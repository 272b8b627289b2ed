"""Packaging: import names, lazy CLI, and a normal (non-editable) install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_hw_and_export_import_under_qnet() -> None:
    import qnet.export
    import qnet.hw

    assert Path(qnet.hw.__file__).resolve().parent == ROOT / "hw"
    assert Path(qnet.export.__file__).resolve().parent == ROOT / "export"


def test_help_and_version_do_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from qnet.cli import main\n"
        "for args in (['--help'], ['--version']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'brevitas', 'hls4ml', 'onnx', 'qonnx') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "HEAVY []" in out.stdout


def test_hw_imports_without_torch() -> None:
    code = (
        "import sys\n"
        "import qnet.hw, qnet.hw.graph, qnet.hw.simulator, qnet.hw.fixed\n"
        "for name in ('qnet.hw.boards', 'qnet.hw.estimator', 'qnet.hw.lstm'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ModuleNotFoundError as e:\n"
        "        if e.name != name: raise\n"
        "assert 'torch' not in sys.modules, 'qnet.hw imported torch'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_cli_version_exit_code() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from qnet.cli import main; main(['--version'])"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0
    assert out.stdout.startswith("qnet ")


def test_normal_install_imports_hw_and_export(tmp_path: Path) -> None:
    """A non-editable install (wheel into a target dir) maps hw/ and export/ into qnet."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    code = (
        "import qnet, qnet.hw, qnet.export, qnet.hw.fixed\n"
        "from importlib.resources import files\n"
        f"assert qnet.__file__.startswith({str(target)!r}), qnet.__file__\n"
        "assert any(p.name.endswith('.toml') for p in files('qnet.boards').iterdir())\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


#: Public functions that must stay functions whatever was imported before, by namespace.
PUBLIC_FUNCTIONS = {
    "qnet": ("lower", "simulate", "estimate", "verify", "to_hls4ml", "to_verilog", "fit"),
    "qnet.hw": ("simulate", "estimate", "load_board"),
    "qnet.export": (
        "to_hls4ml",
        "to_verilog",
        "build_rtl",
        "export_qonnx",
        "execute_qonnx",
        "write_export_project",
    ),
}

_IMPORT_ALL_THEN_CHECK = """
import importlib, inspect, json, pkgutil, sys, warnings
warnings.simplefilter("ignore")
import qnet
names = []
for pkg in ("qnet", "qnet.hw", "qnet.export", "qnet.cli", "qnet.models", "qnet.lowering"):
    try:
        mod = importlib.import_module(pkg)
    except ModuleNotFoundError:
        continue
    for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
        importlib.import_module(info.name)
        names.append(info.name)
wanted = json.loads(sys.argv[1])
bad = {}
for ns, attrs in wanted.items():
    mod = importlib.import_module(ns)
    for attr in attrs:
        obj = getattr(mod, attr)
        if not inspect.isfunction(obj):
            bad[f"{ns}.{attr}"] = repr(type(obj))
print(json.dumps({"imported": names, "bad": bad}))
"""


def test_public_functions_stay_functions_after_every_submodule_is_imported() -> None:
    """Import every submodule first (a fresh interpreter), then each public name must be the
    function, not a module of the same name (no class-swapping tricks either)."""
    import json

    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL_THEN_CHECK, json.dumps(PUBLIC_FUNCTIONS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "qnet.verification" in result["imported"] and len(result["imported"]) > 20
    assert result["bad"] == {}
    import qnet

    assert qnet.verify.__module__ == "qnet.verification"
    assert "qnet._callable" not in result["imported"]  # no class-swapping module trick left


def test_lower_is_the_function_whatever_was_imported() -> None:
    import importlib.util
    import types

    import qnet
    import qnet.evaluation
    import qnet.lowering
    import qnet.lowering.driver  # noqa: F401

    assert isinstance(qnet.lower, types.FunctionType)
    assert qnet.lower is qnet.lowering.lower
    assert importlib.util.find_spec("qnet.lower") is None  # no module to shadow the function


def test_no_module_over_700_lines() -> None:
    """Issue 12's limit: a module that grows past 700 lines is split (it has happened twice)."""
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for folder in ("qnet", "hw", "export")
        for path in (ROOT / folder).rglob("*.py")
    }
    assert len(sizes) > 80  # the walk found the packages
    assert {name: n for name, n in sizes.items() if n > 700} == {}
