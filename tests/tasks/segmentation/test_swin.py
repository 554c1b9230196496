"""Segmentation on a hierarchical backbone: a tiny random Swin's four stages (strides 4, 8, 16, 32), each
layer-normalised, feed the UperNet head directly (no neck resampling); DyT on it skips tokens per stage, sparse equals
masked, MACs equal torch's counter, a training step reaches every trainable parameter, and `dytune train` trains and
evaluates it on an ADE20K-layout folder (`dytune eval --budgets` too)."""
import json
from pathlib import Path

import pytest
import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import dytune
from dytune.backbones import find_backbone
from dytune.tasks.segmentation.model import (FeaturePyramidNeck, Segmenter, SegmentationLoss, StageNorms,
                                             slide_inference)
from tests.conftest import countable, randomize_adapters

from .test_model import randomize_heads
from .test_task import write_ade

WIDTHS = (16, 32, 64, 128)
SWIN = dict(pretrained=False, img_size=64, window_size=3, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
            num_classes=0, dynamic_img_size=True)
# `dytune train` settings of a tiny Swin (stage grids 8, 4, 2, 1 at the 32 px crop)
SWIN_RUN = dict(model="swin_tiny_patch4_window7_224",
                model_kwargs=dict(window_size=2, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4]))


def swin(seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("swin_tiny_patch4_window7_224", **{**SWIN, **overrides})


def dyt_segmenter(seed: int = 0, **kwargs) -> Segmenter:
    model = dytune.convert(swin(seed), dytune.DyTConfig(bottleneck=8))
    randomize_adapters(model, std=0.2)
    torch.manual_seed(1)
    return Segmenter(model, 5, **{"channels": 16, "aux_channels": 8, **kwargs})


def test_the_stages_feed_the_head_at_their_own_strides():
    seg = Segmenter(swin(), 5, channels=16, aux_channels=8)
    assert seg.out_indices == (0, 1, 2, 3) and seg.patch_size == 4
    assert isinstance(seg.neck, StageNorms) and not any(isinstance(m, FeaturePyramidNeck) for m in seg.modules())
    assert seg.neck.out_channels == list(WIDTHS) and seg.decode_head.in_channels == WIDTHS
    assert seg.auxiliary_head.convs[0][0].in_channels == 64  # the third stage, as mmseg's auxiliary FCN
    assert isinstance(seg.backbone.norm, nn.Identity)  # timm's last-stage norm is pruned: every stage gets its own
    images = torch.randn(2, 3, 60, 44)  # 15 x 11 patches: patch merging pads the odd grids
    with torch.no_grad():
        features = seg.forward_features(images)
        pyramid = seg.neck(features)
    assert [tuple(f.shape) for f in features] == [(2, 16, 15, 11), (2, 32, 8, 6), (2, 64, 4, 3), (2, 128, 2, 2)]
    for level in pyramid:  # a fresh LayerNorm per stage: zero mean, unit variance over the channels of each pixel
        torch.testing.assert_close(level.mean(1), torch.zeros_like(level[:, 0]), atol=1e-5, rtol=0)
        torch.testing.assert_close(level.var(1, unbiased=False), torch.ones_like(level[:, 0]), atol=1e-3, rtol=0)
    main, aux = seg.train()(images)
    assert main.shape == aux.shape == (2, 5, 60, 44)
    assert seg.eval()(torch.randn(1, 3, 30, 50)).shape == (1, 5, 30, 50)  # not multiples of the patch: padded


def test_fewer_stages_prune_the_rest_and_bad_levels_are_named():
    seg = Segmenter(swin(), 5, out_indices=(1, 2), channels=16, aux_channels=8, aux_index=1)
    assert find_backbone(seg).num_stages == 3 and seg.neck.out_channels == [32, 64]
    assert seg.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)
    with pytest.raises(ValueError, match=r"out_indices=\(0, 1, 2, 4\) outside the backbone's 4 stages \(0\.\.3\); "
                                         r"its pyramid levels are stages"):
        Segmenter(swin(), 5, out_indices=(0, 1, 2, 4))
    with pytest.raises(ValueError, match=r"strides=\(4, 8, 16, 16\), but the timm_swin backbone's stages "
                                         r"\(0, 1, 2, 3\) have strides \(4, 8, 16, 32\)"):
        Segmenter(swin(), 5, strides=(4, 8, 16, 16))
    Segmenter(swin(), 5, strides=(4, 8, 16, 32), channels=16)  # its own strides are accepted
    with pytest.raises(ValueError, match=r"aux_index=3; expected a pyramid level in 0\.\.1"):
        Segmenter(swin(), 5, out_indices=(2, 3), aux_index=3)


def test_a_dyt_training_step_reaches_every_trainable_parameter():
    seg = dyt_segmenter().train()
    loss, parts = SegmentationLoss()(seg(torch.randn(2, 3, 64, 48)), torch.randint(0, 5, (2, 64, 48)))
    loss.backward()
    trainable = {n: p for n, p in seg.named_parameters() if p.requires_grad}
    assert any("adapter" in n for n in trainable) and any("dispatcher" in n for n in trainable)
    assert any(n.startswith("neck.norms") for n in trainable)
    assert not any("qkv" in n for n in trainable)  # the backbone stays frozen
    assert [n for n, p in trainable.items() if p.grad is None] == []
    assert set(parts) == {"ce", "aux_ce"}


@pytest.mark.parametrize("size", [(64, 64), (60, 44)])
def test_sparse_equals_masked_with_tokens_skipped_per_stage(size):
    seg = dyt_segmenter().eval()
    randomize_heads(seg)
    images = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(5))
    backbone = find_backbone(seg)
    with torch.no_grad():
        sparse = seg(images)
        rates = dytune.keep_rates(seg)
        masks = [block.keep_masks["mlp"].shape for block in backbone.blocks]
        with dytune.execution(seg, "masked"):
            masked = seg(images)
        with dytune.execution(seg, "complete"):
            complete = seg(images)
    assert all(0.0 < r < 1.0 for r in rates[:4]), rates  # the first two stages have enough tokens to skip some
    torch.testing.assert_close(sparse, masked, atol=1e-4, rtol=0)
    assert not torch.allclose(sparse, complete, atol=1e-3)
    stages = [backbone.token_layout(i).stage for i in range(backbone.depth)]  # each mask covers its stage's grid
    assert masks == [(3, rows * cols) for rows, cols in (backbone.grid(size, s) for s in stages)]


@pytest.mark.parametrize("size", [(64, 64), (52, 40)])
def test_macs_match_torch_counter_whole_and_sliding(size):
    seg = countable(dyt_segmenter().eval()).requires_grad_(False)  # the counter hooks leaf inputs that need grad
    image = torch.randn(1, 3, *size)

    def slide(model, x):
        return slide_inference(model, x, 5, crop=32, stride=24)

    for forward in (None, slide):
        ours = int(dytune.count_macs(seg, image, norms=False, **({"forward": forward} if forward else {}))[0])
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            (forward or (lambda m, x: m(x)))(seg, image)
        assert ours == counter.get_total_flops() // 2
    with dytune.execution(seg, "complete"):
        dense = int(dytune.count_macs(seg, image, norms=False)[0])
    assert int(dytune.count_macs(seg, image, norms=False)[0]) < dense


def test_skip_maps_have_one_panel_per_block_on_its_stage_grid(tmp_path):
    from dytune.viz import _keep_panels, plot_segmentation

    seg = dyt_segmenter().eval()
    images = torch.randn(2, 3, 60, 44)
    with torch.no_grad():
        seg(images)
    panels = _keep_panels(seg, images.shape[-2:])
    assert [(p.stride, p.grid) for p in panels[::2]] == [((4, 4), (15, 11)), ((8, 8), (8, 6)), ((16, 16), (4, 3)),
                                                         ((32, 32), (2, 2))]
    path = plot_segmentation(seg, images, torch.randint(0, 5, (2, 60, 44)), tmp_path / "seg.png",
                             lambda labels: torch.rand(*labels.shape, 3).numpy())
    assert path.stat().st_size > 0


@pytest.mark.slow
def test_dytune_train_trains_and_evaluates_a_swin(tmp_path):
    from dytune.cli import main
    from dytune.engine.runs import evaluate_run, load_run

    root = write_ade(tmp_path / "ade")
    out = tmp_path / "run"
    settings = dict(dataset="ade20k", data_root=str(root), output_dir=str(out), method="dyt", img_size=32,
                    num_workers=0, batch_size=4, warmup_epochs=0.0, train_split="training", eval_split="validation",
                    seg_channels=32, seg_scale=[64, 32], seg_ratio_range=[1.0, 1.0], lr=3e-2, epochs=3,
                    model=SWIN_RUN["model"])
    args = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in settings.items()]
    args.append("model_kwargs=" + json.dumps(SWIN_RUN["model_kwargs"]))
    assert main(["train", *args]) == 0
    final = json.loads((out / "results.json").read_text())["final"]
    assert final["images"] == 8 and final["classes"] == 3 and 0.0 <= final["miou"] <= 100.0
    assert len(final["keep_rates"]) == 4 and 0.0 < final["keep_rate"] < 1.0
    loaded = load_run(out)
    assert isinstance(loaded.model.neck, StageNorms) and find_backbone(loaded.model).num_stages == 4
    metrics = evaluate_run(out, ("seg_inference=whole",))
    assert metrics["miou"] == pytest.approx(final["miou"])  # one 32 px window covers each 32 px test image
    curve = tmp_path / "budget.json"
    assert main(["eval", str(out), "--budgets", "0,1", "--calibration-images", "4", "--out", str(curve)]) == 0
    rows = json.loads(curve.read_text())["rows"]
    assert rows[0]["miou"] == pytest.approx(final["miou"]) and rows[1]["gmacs"] < rows[2]["gmacs"]
