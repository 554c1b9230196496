"""Atomic file writes, and reading the JSON files they wrote."""
import os
from pathlib import Path

import pytest

from dytune.utils.io import atomic_write, read_json


def test_atomic_write_leaves_no_partial_file_and_the_usual_mode(tmp_path):
    target = tmp_path / "out.json"
    atomic_write(target, lambda tmp: Path(tmp).write_text("{}"))
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_text() == "{}" and target.stat().st_mode & 0o777 == 0o666 & ~umask

    def fail(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_read_json_names_the_file_and_what_was_expected(tmp_path):
    (tmp_path / "a.json").write_text('{"x": [1, 2]}')
    assert read_json(tmp_path / "a.json", "a thing") == {"x": [1, 2]}
    with pytest.raises(FileNotFoundError, match=r"b.json: not found; expected a thing written by dytune"):
        read_json(tmp_path / "b.json", "a thing written by dytune")
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(ValueError, match=r"c.json: not valid JSON \("):
        read_json(tmp_path / "c.json", "a thing")
