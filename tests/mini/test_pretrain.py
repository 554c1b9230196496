"""Pre-training of the mini backbone: the source renderer's curriculum and exact resumption."""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict

import pytest
import torch

from dytune.cli import mini as cli_mini
from dytune.mini import pretrain
from dytune.data.sources import find_fashion_mnist


@pytest.fixture(scope="module")
def fashion():
    try:
        find_fashion_mnist()
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")


def test_render_source_difficulty():
    items = torch.zeros(32, 28, 28, dtype=torch.uint8)
    items[:, 4:24, 4:24] = 255
    easy = pretrain.render_source(items, torch.Generator().manual_seed(0), 0.0)
    assert easy.shape == (32, 3, 64, 64)
    assert easy[:, :, :4, :4].abs().max() < 1e-6 and easy[:, :, 30:34, 30:34].min() > 0.99  # white on black, centred
    hard = pretrain.render_source(items, torch.Generator().manual_seed(0), 1.0)
    assert hard[:, :, :4, :4].mean() > 0.05  # coloured canvases
    # the same seed with blank items draws the same canvases: the difference is the ink
    blank = pretrain.render_source(torch.zeros_like(items), torch.Generator().manual_seed(0), 1.0)
    ink = (hard - blank).abs().sum(1) > 0.1
    centroid = torch.stack([m.nonzero().float().mean(0) for m in ink])
    assert centroid.std(0).min() > 5  # items placed all over the canvas
    sides = torch.stack([m.nonzero().amax(0) - m.nonzero().amin(0) for m in ink]).float()
    assert sides.min() < 20 < 30 < sides.max()  # at sizes from small to large


def parse(*argv: str) -> pretrain.PretrainConfig:
    """The run that `dytune pretrain` builds from these flags."""
    parser = argparse.ArgumentParser()
    cli_mini.add_parser(parser.add_subparsers(), "pretrain")
    return cli_mini.pretrain_config(parser.parse_args(["pretrain", *argv]))


def test_interrupted_run_resumes_to_the_same_weights(fashion, tmp_path, monkeypatch):
    small = pretrain.test_set(100)
    monkeypatch.setattr(pretrain, "test_set", lambda count=10000, seed=12345: small)
    common = ["--embed-dim", "16", "--depth", "1", "--heads", "2", "--batch-size", "8", "--epochs", "0.0008",
              "--easy-epochs", "0.0002", "--curriculum-epochs", "0.0004", "--warmup-epochs", "0.0002",
              "--ckpt-every", "2", "--eval-size", "50", "--drop-path", "0.1"]
    whole = pretrain.train(parse("--out", str(tmp_path / "whole"), *common))
    assert whole["finished"] and whole["total"] == 6
    cut = pretrain.train(parse("--out", str(tmp_path / "cut"), *common, "--max-minutes", "1e-9"))
    assert not cut["finished"] and cut["step"] == 1
    resumed = pretrain.train(parse("--out", str(tmp_path / "cut"), *common))
    assert resumed["finished"] and resumed["test_acc"] == whole["test_acc"]
    a = pretrain.load_last(tmp_path / "whole")["model"]
    b = pretrain.load_last(tmp_path / "cut")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "cut" / "log.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 4, 6]
    with pytest.raises(ValueError, match="different configuration"):
        pretrain.train(parse("--out", str(tmp_path / "cut"), *common[:-2], "--drop-path", "0.0"))

    stage2 = ["--init", str(tmp_path / "cut" / "last"), "--embed-dim", "16", "--depth", "1", "--heads", "2",
              "--batch-size", "8", "--epochs", "0.0004", "--curriculum-epochs", "0", "--ckpt-every", "3",
              "--lr", "1e-4"]
    second = pretrain.train(parse("--out", str(tmp_path / "stage2"), *stage2))
    assert second["finished"] and second["total"] == 3
    c = pretrain.load_last(tmp_path / "stage2")["model"]
    assert not torch.equal(b["head.weight"], c["head.weight"])

    out = pretrain.export(tmp_path / "stage2", tmp_path / "assets")
    from dytune.pretrained import mini_vit, mini_vit_info
    model = mini_vit(assets=out)
    info = mini_vit_info(out)
    assert info["steps"] == 3 and model.embed_dim == 16 and len(info["training"]) == 2
    expected = {k: v.half().float() for k, v in c.items()}  # shipped as float16
    assert all(torch.equal(model.state_dict()[k], expected[k]) for k in expected)
    with open(out / "mini_vit_log.csv") as f:
        assert [(r["run"], int(r["step"])) for r in csv.DictReader(f)] == [
            ("cut", 1), ("cut", 2), ("cut", 4), ("cut", 6), ("stage2", 3)]


# --- the multi-task source (issue 12) ---------------------------------------------------------------------------

def _scene(n, max_items, full_rotation, seed=0, single_share=0.0):
    """Scenes of solid squares and the same scenes with blank items: their difference is the ink."""
    items = torch.zeros(n, max_items, 28, 28, dtype=torch.uint8)
    items[:, :, 6:22, 6:22] = 255
    labels = torch.randint(10, (n, max_items), generator=torch.Generator().manual_seed(seed + 1))
    kw = dict(max_items=max_items, full_rotation=full_rotation, single_share=single_share)
    image, targets = pretrain.render_scene(items, labels, torch.Generator().manual_seed(seed), **kw)
    blank, again = pretrain.render_scene(torch.zeros_like(items), labels, torch.Generator().manual_seed(seed), **kw)
    assert all(torch.equal(targets[k], again[k]) for k in targets if k != "patch")  # geometry ignores the ink
    return image, labels, targets, (image - blank).abs().amax(1) > 0.15


def test_scene_targets_of_single_items_match_the_render():
    image, labels, t, ink = _scene(200, 1, full_rotation=0.0)
    assert image.shape == (200, 3, 64, 64) and 0 <= image.min() and image.max() <= 1
    assert (t["count"] == 0).all() and torch.equal(t["label"], labels[:, 0])
    assert torch.equal(t["present"], torch.nn.functional.one_hot(labels[:, 0], 10).float())
    centroid = torch.stack([m.nonzero().float().mean(0) for m in ink])  # (row, col)
    x_bin = (centroid[:, 1] / 64 * pretrain.AUX_BINS).long()
    y_bin = (centroid[:, 0] / 64 * pretrain.AUX_BINS).long()
    assert (x_bin == t["x"]).float().mean() > 0.85 and (x_bin - t["x"]).abs().max() <= 1
    assert (y_bin == t["y"]).float().mean() > 0.85 and (y_bin - t["y"]).abs().max() <= 1
    extent = torch.stack([(m.nonzero().amax(0) - m.nonzero().amin(0)).float().max() for m in ink])
    by_bin = [extent[t["size"] == b].mean() for b in t["size"].unique()]
    assert all(a < b for a, b in zip(by_bin, by_bin[1:]))  # larger size bins are larger items
    assert (t["angle"] == 0).all()  # +-20 degrees lies inside the upright bin (+-22.5)
    cell = (centroid.flip(-1) / 64 * pretrain.GRID).long()
    assert (t["occupancy"].argmax(-1) == cell[:, 1] * pretrain.GRID + cell[:, 0]).float().mean() > 0.8
    assert (t["occupancy"].sum(-1) == 1).all()


def test_scene_targets_of_several_items_match_the_render():
    from scipy import ndimage

    _, labels, t, ink = _scene(200, 5, full_rotation=1.0)
    count = t["count"] + 1
    assert set(count.tolist()) == {1, 2, 3, 4, 5}
    blobs = torch.tensor([ndimage.label(m.numpy())[1] for m in ink])
    assert (blobs <= count).all() and (blobs == count).float().mean() > 0.7  # touching items may merge, no more
    drawn = torch.arange(5)[None] < count[:, None]
    for i in range(len(labels)):
        assert set(t["present"][i].nonzero().flatten().tolist()) == set(labels[i][drawn[i]].tolist())
    assert (1 <= t["occupancy"].sum(-1)).all() and (t["occupancy"].sum(-1) <= count).all()
    patch_ink = torch.nn.functional.max_pool2d(ink.float()[:, None], 8).flatten(1) > 0
    foreground = t["patch"] < 10
    assert patch_ink[foreground].all() and patch_ink[~foreground].float().mean() < 0.2
    for i in range(len(labels)):  # a foreground patch names one of the items drawn
        assert set(t["patch"][i][foreground[i]].tolist()) <= set(labels[i][drawn[i]].tolist())
    assert torch.bincount(t["angle"], minlength=8).min() > 5  # rotations all round
    _, _, single, _ = _scene(200, 5, 0.0, single_share=1.0)
    assert (single["count"] == 0).all()


def test_default_options_are_the_single_item_task(fashion, tmp_path, monkeypatch):
    # the batches of the defaults are the published formula: shuffled epochs, one generator per (seed, step)
    items = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8)
    labels = torch.arange(40) % 10
    batches = pretrain.source_batches(items, labels, 8, 3, 4, lambda s: 0.5)
    for step in (4, 5):
        got_step, images, target = next(batches)
        order = torch.randperm(40, generator=torch.Generator().manual_seed(3 * 100_003 + step // 5))
        idx = order[(step % 5) * 8:(step % 5 + 1) * 8]
        expected = pretrain.render_source(items[idx], torch.Generator().manual_seed(3 * 1_000_003 + step), 0.5)
        assert got_step == step and torch.equal(images, expected) and torch.equal(target, labels[idx])

    args = parse("--out", str(tmp_path / "run"))
    assert not pretrain.is_multitask(asdict(args))
    def refuse(*a, **k):
        raise AssertionError("the default options must not use the multi-task source")
    monkeypatch.setattr(pretrain, "scene_batches", refuse)
    monkeypatch.setattr(pretrain, "multitask_loss", refuse)
    small = pretrain.test_set(50)
    monkeypatch.setattr(pretrain, "test_set", lambda count=10000, seed=12345: small)
    pretrain.train(parse("--out", str(tmp_path / "run"), "--embed-dim", "16", "--depth", "1", "--heads", "2",
                         "--batch-size", "8", "--epochs", "0.0003", "--ckpt-every", "1", "--eval-size", "20"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert not set(config) & set(pretrain.MULTITASK_DEFAULTS)  # config.json as before the options existed
    assert "aux" not in pretrain.load_last(tmp_path / "run")


def test_multitask_run_resumes_exports_without_aux_heads_and_chains_from_an_export(fashion, tmp_path, monkeypatch):
    small = pretrain.test_set(60)
    monkeypatch.setattr(pretrain, "test_set", lambda count=10000, seed=12345: small)
    common = ["--embed-dim", "16", "--depth", "1", "--heads", "2", "--batch-size", "8", "--epochs", "0.0006",
              "--curriculum-epochs", "0", "--ckpt-every", "2", "--eval-size", "30", "--max-items", "3",
              "--single-share", "0.2", "--full-rotation", "0.5", "--aux-weight", "0.5", "--patch-weight", "0.5"]
    whole = pretrain.train(parse("--out", str(tmp_path / "whole"), *common))
    assert whole["finished"] and whole["total"] == 4
    pretrain.train(parse("--out", str(tmp_path / "cut"), *common, "--max-minutes", "1e-9"))
    resumed = pretrain.train(parse("--out", str(tmp_path / "cut"), *common))
    assert resumed["finished"] and resumed["test_acc"] == whole["test_acc"]
    a = pretrain.load_last(tmp_path / "whole")
    b = pretrain.load_last(tmp_path / "cut")
    assert set(a["aux"]) >= {"heads.count.weight", "heads.angle.weight", "patch.weight"}
    assert all(torch.equal(a[part][k], b[part][k]) for part in ("model", "aux") for k in a[part])
    config = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert config["max_items"] == 3 and config["aux_weight"] == 0.5

    first = pretrain.export(tmp_path / "whole", tmp_path / "v1")
    # a further stage from an exported backbone (as the shipped one was trained), single-item and multi-task
    chained = ["--init", str(first / "mini_vit.safetensors"), *common[:-2], "--patch-weight", "0.0",
               "--epochs", "0.0003"]
    assert pretrain.train(parse("--out", str(tmp_path / "stage2"), *chained))["finished"]
    out = pretrain.export(tmp_path / "stage2", tmp_path / "v2")
    from dytune.pretrained import mini_vit, mini_vit_info
    model = mini_vit(assets=out)  # strict load: no auxiliary weights in the export
    info = mini_vit_info(out)
    assert model.num_classes == 10 and len(info["training"]) == 2 and "render_scene" in info["source_task"]
    assert [t["out"] for t in info["training"]] == [str(tmp_path / "whole"), str(tmp_path / "stage2")]
    with open(out / "mini_vit_log.csv") as f:
        assert [(r["run"], int(r["step"])) for r in csv.DictReader(f)] == [
            ("whole", 2), ("whole", 4), ("stage2", 2)]
    with pytest.raises(ValueError, match="max_items"):
        pretrain.render_scene(torch.zeros(2, 2, 28, 28, dtype=torch.uint8), torch.zeros(2, 2, dtype=torch.long),
                              torch.Generator(), max_items=3)


def test_head_only_stage_changes_only_the_head(fashion, tmp_path, monkeypatch):
    small = pretrain.test_set(40)
    monkeypatch.setattr(pretrain, "test_set", lambda count=10000, seed=12345: small)
    common = ["--embed-dim", "16", "--depth", "1", "--heads", "2", "--batch-size", "8", "--epochs", "0.0003",
              "--curriculum-epochs", "0", "--ckpt-every", "2", "--eval-size", "20"]
    pretrain.train(parse("--out", str(tmp_path / "a"), *common))
    assert "head_only" not in json.loads((tmp_path / "a" / "config.json").read_text())
    pretrain.train(parse("--out", str(tmp_path / "b"), *common, "--init", str(tmp_path / "a" / "last"),
                         "--head-only", "--lr", "1e-2"))
    assert json.loads((tmp_path / "b" / "config.json").read_text())["head_only"] is True
    a = pretrain.load_last(tmp_path / "a")["model"]
    b = pretrain.load_last(tmp_path / "b")["model"]
    assert all(torch.equal(a[k], b[k]) != k.startswith("head.") for k in a)
    with pytest.raises(ValueError, match="head-only"):
        pretrain.train(parse("--out", str(tmp_path / "c"), *common, "--head-only", "--aux-weight", "0.5"))


def test_pretrain_keeps_its_run_in_the_engine_run_folder(fashion, tmp_path, monkeypatch, capsys):
    """Lock, manifest-verified `last/` with `last.prev`, RNG states; an older run folder's last.pt still resumes."""
    import shutil

    from dytune.engine.rundir import RunLock, checkpoint_epoch, verify_checkpoint
    from dytune.utils.errors import RunError

    small = pretrain.test_set(60)
    monkeypatch.setattr(pretrain, "test_set", lambda count=10000, seed=12345: small)
    common = ["--embed-dim", "16", "--depth", "1", "--heads", "2", "--batch-size", "8", "--epochs", "0.0008",
              "--curriculum-epochs", "0", "--ckpt-every", "2", "--eval-size", "30", "--drop-path", "0.1"]
    pretrain.train(parse("--out", str(tmp_path / "whole"), *common))
    whole = tmp_path / "whole"
    assert checkpoint_epoch(verify_checkpoint(whole / "last")) == 6  # the manifest records steps
    assert checkpoint_epoch(whole / "last.prev") == 4 and not (whole / "last.pt").exists()
    assert set(pretrain.load_last(whole)["rng"]) >= {"torch", "python", "numpy"}

    # an older dytune's run folder: last.pt with the torch RNG state alone, resumed to the same weights
    pretrain.train(parse("--out", str(tmp_path / "old"), *common, "--max-minutes", "1e-9"))
    state = pretrain.load_last(tmp_path / "old")
    legacy = {"model": state["model"], "optimizer": state["optimizer"], "torch_rng": state["rng"]["torch"],
              "step": state["step"]}
    shutil.rmtree(tmp_path / "old" / "last")
    torch.save(legacy, tmp_path / "old" / "last.pt")
    assert pretrain.load_init(str(tmp_path / "old" / "last.pt"))["step"] == 1
    assert pretrain.train(parse("--out", str(tmp_path / "old"), *common))["finished"]
    assert not (tmp_path / "old" / "last.pt").exists()
    a, b = pretrain.load_last(whole)["model"], pretrain.load_last(tmp_path / "old")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert pretrain.load_init(str(whole / "last.pt"))["step"] == 6  # an old-style --init path names last/

    # an incomplete last/ falls back to last.prev, saying so
    capsys.readouterr()
    with open(whole / "last" / pretrain.STATE_FILE, "ab") as f:
        f.write(b"\0")
    assert pretrain.load_last(whole)["step"] == 4
    assert "using the previous complete checkpoint" in capsys.readouterr().err

    with RunLock(whole), pytest.raises(RunError, match="in use|held|running"):
        pretrain.train(parse("--out", str(whole), *common))
    with pytest.raises(FileNotFoundError, match="--init .*nothing: not found"):
        pretrain.load_init(str(tmp_path / "nothing"))
