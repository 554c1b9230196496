"""The mini-segmentation builder: layout, exact labels, determinism, idempotence, atomicity."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dytune.mini import miniseg
from dytune.mini.miniseg import CLASSES, MiniSeg, build_miniseg, load_sources, render_miniseg, shape_sprites

SMALL = dict(n_train=6, n_val=4, size=64, progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_miniseg(tmp_path_factory.mktemp("miniseg") / "data", seed=3, **SMALL)


def test_layout_and_dataset(built):
    assert sorted(p.name for p in (built / "images" / "training").iterdir())[:2] == ["000000.jpg", "000001.jpg"]
    assert len(list((built / "annotations" / "validation").glob("*.png"))) == 4
    assert (built / "classes.txt").read_text().splitlines() == list(CLASSES)
    meta = json.loads((built / "meta.json").read_text())
    assert meta["num_classes"] == 15 and meta["counts"] == {"training": 6, "validation": 4} and meta["seconds"] >= 0
    data = MiniSeg(built, "validation")
    assert len(data) == 4 and data.classes == CLASSES and data.palette.shape == (15, 3)
    image, mask = data[0]
    assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
    assert set(mask.unique().tolist()) <= set(range(15)) | {255} and (mask == 0).any()  # 0 = background


def test_labels_follow_the_objects():
    images = render_miniseg("training", 60, seed=0, size=64)
    labels = images.labels.long()
    assert set(labels.unique().tolist()) == set(range(16))  # unlabelled rims, background and every object class
    assert 0.005 < float((labels == 0).float().mean()) < 0.1
    # object pixels differ from the background texture around them: ink is drawn in a contrasting colour
    grey = images.images.mean(1)
    gaps = [abs(float(grey[i][labels[i] == c].mean() - grey[i][labels[i] == 1].mean()))
            for i in range(20) for c in labels[i].unique().tolist() if c >= 2]
    assert len(gaps) > 20 and sum(g > 0.15 for g in gaps) > 0.9 * len(gaps)


def test_validation_sources_are_held_out():
    src = load_sources(0)
    for train, val in zip(src.letter_pools["training"], src.letter_pools["validation"]):
        assert len(train) and len(val) and not set(train.tolist()) & set(val.tolist())
    for train, val in zip(src.digit_pools["training"], src.digit_pools["validation"]):
        assert len(train) and len(val) and not set(train.tolist()) & set(val.tolist())


def test_shape_sprites_are_antialiased_and_distinct():
    sprites = shape_sprites(torch.arange(6), torch.Generator().manual_seed(0))
    assert sprites.shape == (6, 32, 32) and 0 <= sprites.min() and sprites.max() <= 1
    ink = (sprites > 0.5).float().mean(dim=(1, 2))
    assert (ink > 0.1).all() and len({round(float(v), 2) for v in ink}) == 6


@pytest.mark.slow
def test_same_seed_same_files_and_rerun_keeps_the_folder(built, tmp_path):
    again = build_miniseg(tmp_path / "again", seed=3, **SMALL)
    for rel in ("annotations/training/000005.png", "images/validation/000003.jpg"):
        assert (built / rel).read_bytes() == (again / rel).read_bytes()
    stamp = (again / "meta.json").stat().st_mtime_ns
    assert build_miniseg(again, seed=3, **SMALL) == again and (again / "meta.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="was built with .*'seed': 3.*not the requested .*'seed': 4"):
        build_miniseg(again, seed=4, **SMALL)
    other = render_miniseg("training", 6, seed=4, size=64)
    mask = np.asarray(Image.open(built / "annotations" / "training" / "000000.png"))
    assert not np.array_equal(other.labels[0].numpy(), mask)


@pytest.mark.slow
def test_an_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def fail(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    original = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(KeyboardInterrupt):
        build_miniseg(tmp_path / "data", **SMALL)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(Image.Image, "save", original)
    with pytest.raises(ValueError, match="training split needs at least one image"):
        build_miniseg(tmp_path / "data", n_train=0, n_val=2)
    (tmp_path / "foreign").mkdir()
    with pytest.raises(ValueError, match="has no meta.json: not a mini-segmentation folder"):
        build_miniseg(tmp_path / "foreign", **SMALL)
@pytest.mark.slow
def test_heldout_splits_link_the_training_files_and_complete_an_older_build(built, tmp_path):
    assert miniseg.heldout_splits(1000) == {"train800": range(800), "val200": range(800, 1000)}
    assert sorted(p.name for p in (built / "images" / "train5").iterdir()) == [f"{i:06d}.jpg" for i in range(5)]
    assert MiniSeg(built, "val1").files[0][1].read_bytes() == (built / "annotations/training/000005.png").read_bytes()
    assert len(MiniSeg(built, "training")) == 6  # the training split itself is unchanged
    assert json.loads((built / "meta.json").read_text())["heldout"] == {"train5": [0, 5], "val1": [5, 6]}
    older = build_miniseg(tmp_path / "older", seed=3, **SMALL)
    for kind in ("images", "annotations"):
        for split in ("train5", "val1"):
            shutil.rmtree(older / kind / split)
    build_miniseg(older, seed=3, **SMALL)
    assert len(MiniSeg(older, "train5")) == 5 and len(MiniSeg(older, "val1")) == 1
