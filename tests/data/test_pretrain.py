"""Pre-training of the mini backbone: the source renderer's curriculum and exact resumption."""
from __future__ import annotations

import argparse
import csv

import pytest
import torch

from dytune import pretrain
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


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    pretrain.add_parser(parser.add_subparsers(), "pretrain")
    return parser.parse_args(["pretrain", *argv])


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
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "cut" / "log.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 4, 6]
    with pytest.raises(ValueError, match="different configuration"):
        pretrain.train(parse("--out", str(tmp_path / "cut"), *common[:-2], "--drop-path", "0.0"))

    stage2 = ["--init", str(tmp_path / "cut" / "last.pt"), "--embed-dim", "16", "--depth", "1", "--heads", "2",
              "--batch-size", "8", "--epochs", "0.0004", "--curriculum-epochs", "0", "--ckpt-every", "3",
              "--lr", "1e-4"]
    second = pretrain.train(parse("--out", str(tmp_path / "stage2"), *stage2))
    assert second["finished"] and second["total"] == 3
    c = torch.load(tmp_path / "stage2" / "last.pt", weights_only=False)["model"]
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
