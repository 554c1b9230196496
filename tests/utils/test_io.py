"""Atomic file writes."""
import os
from pathlib import Path

import pytest

from dytune.utils.io import atomic_write


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
