"""mini-VTAB builder: layout, labels, determinism, idempotence, and the VTAB loader reading its output."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dytune.mini import minivtab

SMALL = dict(n_train=12, n_val=4, n_test=10)


def tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("minivtab")
    minivtab.build_minivtab(root, seed=0, progress=False, **SMALL)
    return root


def read_list(path: Path):
    return [(line.split()[0], int(line.split()[1])) for line in path.read_text().splitlines()]


def test_layout_and_labels(built):
    assert sorted(p.name for p in built.iterdir()) == sorted(minivtab.TASKS)
    groups = {t for ts in minivtab.GROUPS.values() for t in ts}
    assert groups == set(minivtab.TASKS)
    for task, spec in minivtab.TASKS.items():
        folder = built / task
        train, val = read_list(folder / "train800.txt"), read_list(folder / "val200.txt")
        test = read_list(folder / "test.txt")
        assert (len(train), len(val), len(test)) == (12, 4, 10)
        assert read_list(folder / "train800val200.txt") == train + val
        assert (folder / "classes.txt").read_text().splitlines() == list(spec.classes)
        for rel, label in train + val + test:
            assert 0 <= label < len(spec.classes)
            assert not Path(rel).is_absolute()
        with Image.open(folder / train[0][0]) as image:
            assert image.mode == "RGB" and image.size == (64, 64)
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["num_classes"] == len(spec.classes) and meta["counts"]["test"] == 10
        assert 0.3 < meta["background_share_patch8"]["test"] < 1.0


def test_same_seed_same_bytes_other_seed_other_images(built, tmp_path):
    again = tmp_path / "again"
    minivtab.build_minivtab(again, seed=0, tasks=["count", "letters"], progress=False, **SMALL)
    for task in ("count", "letters"):
        assert tree_digest(again / task) == tree_digest(built / task)
    other = tmp_path / "other"
    minivtab.build_minivtab(other, seed=1, tasks=["count"], progress=False, **SMALL)
    assert tree_digest(other / "count") != tree_digest(built / "count")


def test_rerun_skips_finished_and_rejects_other_settings(built):
    before = {p: p.stat().st_mtime_ns for p in (built / "digits").rglob("*")}
    minivtab.build_minivtab(built, seed=0, tasks=["digits"], progress=False, **SMALL)
    assert {p: p.stat().st_mtime_ns for p in (built / "digits").rglob("*")} == before
    with pytest.raises(ValueError, match="digits was built with"):
        minivtab.build_minivtab(built, seed=0, tasks=["digits"], progress=False, n_train=13, n_val=4, n_test=10)
    with pytest.raises(ValueError, match="unknown mini-VTAB task"):
        minivtab.build_minivtab(built, tasks=["cifar"], progress=False)


def test_failed_build_leaves_no_task_folder(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(minivtab, "_write_list", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        minivtab.build_minivtab(tmp_path, tasks=["scale"], progress=False, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_build_are_removed(tmp_path):
    dead = tmp_path / ".scale.tmp-999999999"  # no such process
    (dead / "images").mkdir(parents=True)
    minivtab.build_minivtab(tmp_path, tasks=["scale"], progress=False, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scale"]


def test_held_out_sources_are_disjoint():
    src = minivtab.load_sources(0)
    assert not set(src.digit_pools["fit"].tolist()) & set(src.digit_pools["test"].tolist())
    fit_fonts = {src.glyph_font[i].item() for i in src.letter_pools["fit"]}
    test_fonts = {src.glyph_font[i].item() for i in src.letter_pools["test"]}
    assert not fit_fonts & test_fonts and len(test_fonts) == len(minivtab.FAMILIES)
    fit_letters = {src.glyph_letter[i].item() for i in src.font_pools["fit"]}
    test_letters = {src.glyph_letter[i].item() for i in src.font_pools["test"]}
    assert not fit_letters & test_letters and len(test_letters) == 8


@pytest.mark.parametrize("task", ["count", "location", "orientation", "scale"])
def test_structured_labels_follow_the_geometry(task):
    """The label must be readable from the pixels: ink coverage grows with count / size, moves with location."""
    r = minivtab.render_task(task, "test", 200, seed=0)
    ink = r.coverage.flatten(1)
    labels = r.labels.numpy()
    if task in ("count", "scale"):
        area = ink.sum(1).numpy()
        assert np.corrcoef(area, labels)[0, 1] > 0.7
    elif task == "location":
        columns = r.coverage.sum(2).squeeze(1)
        xs = (columns * torch.arange(64)).sum(1) / columns.sum(1)
        assert np.corrcoef(xs.numpy(), labels)[0, 1] > 0.95
    else:
        assert len(set(labels.tolist())) == 8


def test_vtab_loader_reads_the_output(built):
    vtab = pytest.importorskip("dytune.tasks.classification.vtab")
    for task, spec in minivtab.TASKS.items():
        assert vtab.num_classes(built, task) == len(spec.classes)
        ds = vtab.vtab_dataset(built, task, "train800val200")
        assert len(ds) == 16
        image, label = ds[0]
        assert 0 <= int(label) < len(spec.classes)
