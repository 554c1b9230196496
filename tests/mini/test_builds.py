"""The one build protocol of the offline data sets: a folder is built beside its destination and renamed into place,
so it is complete or absent."""
import json
import os

import pytest

from dytune.mini.builds import build_atomically


def _fill(tmp):
    (tmp / "sub").mkdir()
    (tmp / "sub" / "a.txt").write_text("a")
    (tmp / "meta.json").write_text(json.dumps({"seed": 1}))


def test_the_folder_appears_complete_and_nothing_else_is_left(tmp_path):
    stale = tmp_path / ".data.tmp-999999999"  # left by a builder that died
    stale.mkdir()
    seen = []
    dest = build_atomically(tmp_path / "data", lambda tmp: (seen.append(tmp), _fill(tmp)))
    assert dest == tmp_path / "data" and (dest / "sub" / "a.txt").read_text() == "a"
    assert seen == [tmp_path / f".data.tmp-{os.getpid()}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_failed_fill_leaves_nothing(tmp_path):
    def fail(tmp):
        _fill(tmp)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_atomically(tmp_path / "data", fail)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_another_process_finished_first_is_kept_if_it_has_the_settings(tmp_path):
    dest = tmp_path / "data"

    def race(tmp):  # the other builder renames its folder into place while this one fills
        _fill(tmp)
        dest.mkdir()
        _fill(dest)

    assert build_atomically(dest, race, {"seed": 1}, "test folder") == dest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    other = tmp_path / "other"

    def race_other_settings(tmp):
        _fill(tmp)
        other.mkdir()
        (other / "meta.json").write_text(json.dumps({"seed": 2}))

    with pytest.raises(ValueError, match=r"other was built with \{'seed': 2\}, not the requested \{'seed': 1\}"):
        build_atomically(other, race_other_settings, {"seed": 1}, "test folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "other"]
