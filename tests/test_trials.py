"""The trial bookkeeping sweep and search share: output folder, manifest, a trial's files."""

from __future__ import annotations

import json

import pytest

from qnet.errors import ConfigError, OutputExistsError
from qnet.trials import check_output_folder, store_error, store_result, write_manifest


def test_output_folder_new_empty_or_forced_starts_over(tmp_path) -> None:
    assert check_output_folder(tmp_path / "new", "sweep.json", "sweep", force=False) is None
    assert check_output_folder(tmp_path, "sweep.json", "sweep", force=False) is None
    (tmp_path / "other.txt").write_text("x")
    assert check_output_folder(tmp_path, "sweep.json", "sweep", force=True) is None


def test_output_folder_returns_the_earlier_settings(tmp_path) -> None:
    write_manifest(tmp_path, "search.json", {"model": "mlp", "bits": [2, 4]})
    old = check_output_folder(tmp_path, "search.json", "search", force=False)
    assert old == {"model": "mlp", "bits": [2, 4]}


def test_output_folder_refusals_name_the_folder(tmp_path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(OutputExistsError, match="is not a folder"):
        check_output_folder(a_file, "sweep.json", "sweep", force=True)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="holds no sweep; use --force"):
        check_output_folder(tmp_path / "d", "sweep.json", "sweep", force=False)
    (tmp_path / "d" / "sweep.json").write_text("{not json")
    with pytest.raises(ConfigError, match="sweep.json: unreadable"):
        check_output_folder(tmp_path / "d", "sweep.json", "sweep", force=False)
    (tmp_path / "d" / "sweep.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="not a sweep manifest"):
        check_output_folder(tmp_path / "d", "sweep.json", "sweep", force=False)


def test_a_result_replaces_the_error_of_an_earlier_attempt(tmp_path) -> None:
    folder = tmp_path / "trials" / "trial-0001"
    store_error(folder, "Traceback ...\nValueError: boom")
    assert (folder / "error.txt").read_text() == "Traceback ...\nValueError: boom\n"
    store_result(folder, {"model.ckpt": b"\x00\x01"})
    assert (folder / "model.ckpt").read_bytes() == b"\x00\x01"
    assert not (folder / "error.txt").exists()
    with pytest.raises(ConfigError, match="folder in it"):
        store_result(folder, {"../escape.ckpt": b""})
