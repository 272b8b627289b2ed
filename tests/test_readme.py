"""README.md stays true: its Python API example runs and its commands match CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    test_cmd = blocks[1].strip().split("&&")[-1].strip()
    assert test_cmd.startswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci, f"{test_cmd!r} is not what .ci/run runs"
    install = blocks[0].strip()
    assert 'pip install -c constraints.txt -e ".[dev]"' in install and install.endswith("qnet demo")
    assert 'pip install -q -c constraints.txt -e ".[dev]"' in ci


@pytest.mark.csim
def test_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trains 10 epochs, lowers, simulates, and verifies with the hls4ml C simulation."""
    code = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "runs" / "api" / "model.ckpt").is_file()
    report = namespace["report"]
    assert report.all_exact  # type: ignore[attr-defined]
