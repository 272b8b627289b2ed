"""qnet.errors: one hierarchy; InternalError is a bug report, never a user error."""

from __future__ import annotations

import ast
import inspect

import pytest

import qnet.errors as errors


def test_every_user_error_is_a_qnet_error_and_internal_error_is_not() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        if name == "InternalError":
            assert not issubclass(cls, errors.QnetError)
        else:
            assert issubclass(cls, errors.QnetError), name
    for name in ("BuildError", "SynthesisError", "OpenSynthError"):
        assert issubclass(getattr(errors, name), errors.ToolError)
    assert not issubclass(errors.BuildError, errors.FormatError)


def test_errors_module_imports_nothing() -> None:
    tree = ast.parse(inspect.getsource(errors))
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imports)


def test_internal_error_asks_for_a_report() -> None:
    exc = errors.InternalError("output layer 'x' is not last")
    assert "output layer 'x' is not last" in str(exc) and "bug in qnet" in str(exc)


def test_cli_shows_internal_error_as_a_bug_with_traceback(monkeypatch, capsys) -> None:
    import qnet.hw.boards
    from qnet.cli import main

    def broken() -> list:
        raise errors.InternalError("a broken invariant")

    monkeypatch.setattr(qnet.hw.boards, "list_boards", broken)
    with pytest.raises(SystemExit) as info:
        main(["boards"])
    assert info.value.code == errors.InternalError.exit_code == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "a broken invariant" in err and "bug in qnet" in err
