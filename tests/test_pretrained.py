"""The shipped mini backbone: loads through timm and recognises held-out items of its source task."""
from __future__ import annotations

import torch

import pytest

from dytune import pretrained


def _assets_or_skip():
    if not (pretrained.ASSETS / pretrained.CONFIG_NAME).is_file():
        pytest.skip(f"no shipped backbone in {pretrained.ASSETS} (train it with `dytune pretrain --export`)")
    return pretrained.mini_vit_info()


def test_missing_assets_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="mini_vit.json"):
        pretrained.mini_vit(assets=tmp_path)


def test_shipped_backbone_beats_chance_on_held_out_items():
    info = _assets_or_skip()
    from dytune.data.sources import find_fashion_mnist, load_fashion_mnist
    from dytune.mini.pretrain import normalize, render_source

    try:
        find_fashion_mnist()
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")
    model = pretrained.mini_vit()
    assert model.pretrained_cfg["mean"] == tuple(info["mean"]) and not model.training
    items, labels = load_fashion_mnist("test")
    # the last 500 test items at full difficulty with a seed the training-time test set never used
    items, labels = torch.from_numpy(items[-500:]), torch.from_numpy(labels[-500:])
    with torch.no_grad():
        logits = model(normalize(render_source(items, torch.Generator().manual_seed(2024), 1.0)))
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    assert accuracy > 0.5, f"{accuracy:.3f} on 10 classes"  # chance is 0.1; the JSON reports the full test set
    assert abs(100 * accuracy - info["test_acc"]) < 10


def test_new_head_for_a_downstream_task():
    _assets_or_skip()
    model = pretrained.mini_vit(num_classes=26)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 26)
    features = pretrained.mini_vit(num_classes=0)(torch.zeros(2, 3, 64, 64))
    assert features.shape == (2, model.embed_dim)
