"""The segmentation model: neck, heads, Segmenter on plain and converted ViTs, losses, inference helpers."""
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import dytune
from dytune.tasks.segmentation.model import (FCNHead, FeaturePyramidNeck, Segmenter, SegmentationLoss, UPerHead,
                                         pixel_cross_entropy, pixel_distillation, slide_inference, sync_batchnorm,
                                         whole_inference)
from tests.conftest import randomize_adapters


def backbone(patch: int = 8, seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    args = dict(img_size=64, patch_size=patch, depth=4, embed_dim=48, num_heads=2, num_classes=0,
                dynamic_img_size=True)
    return timm.create_model("vit_tiny_patch16_224", **{**args, **overrides})


def segmenter(model: nn.Module, num_classes: int = 5, **kwargs) -> Segmenter:
    torch.manual_seed(1)
    args = dict(out_indices=(0, 1, 2, 3), channels=16, aux_channels=8)
    return Segmenter(model, num_classes, **{**args, **kwargs})


def randomize_heads(model: nn.Module, seed: int = 2) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
        head = model.decode_head.conv_seg
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("patch, kinds", [
    (16, [["ConvTranspose2d", "BatchNorm2d", "GELU", "ConvTranspose2d"], ["ConvTranspose2d"], ["Identity"],
          ["MaxPool2d"]]),
    (8, [["ConvTranspose2d"], ["Identity"], ["MaxPool2d"], ["MaxPool2d"]]),
    (4, [["Identity"], ["MaxPool2d"], ["MaxPool2d"], ["MaxPool2d"]]),
])
def test_neck_maps_patch_stride_features_to_strides_4_8_16_32(patch, kinds):
    neck = FeaturePyramidNeck(48, patch)
    image = 128
    grid = image // patch
    out = neck([torch.randn(2, 48, grid, grid) for _ in range(4)])
    assert [tuple(o.shape) for o in out] == [(2, 48, image // s, image // s) for s in (4, 8, 16, 32)]
    layers = [[type(m).__name__ for m in (level if isinstance(level, nn.Sequential) else [level])]
              for level in neck.levels]
    assert layers == kinds


def test_neck_without_norm_is_the_official_dyt_neck_and_odd_factors_use_one_transposed_conv():
    neck = FeaturePyramidNeck(8, 16, norm_layer=None)
    assert [type(m).__name__ for m in neck.levels[0]] == ["ConvTranspose2d", "GELU", "ConvTranspose2d"]
    neck = FeaturePyramidNeck(8, 12, strides=(4, 12))
    assert neck.levels[0].kernel_size == (3, 3) and neck.levels[0].stride == (3, 3)
    with pytest.raises(ValueError, match="stride 4 with patch size 14"):
        FeaturePyramidNeck(8, 14)


def test_uper_head_and_fcn_head_shapes():
    maps = [torch.randn(2, 8, s, s) for s in (16, 8, 4, 2)]
    head = UPerHead([8] * 4, num_classes=7, channels=12).eval()
    assert head(maps).shape == (2, 7, 16, 16)
    aux = FCNHead(8, num_classes=7, channels=6, concat_input=True).eval()
    assert aux(maps[2]).shape == (2, 7, 4, 4)
    with pytest.raises(ValueError, match="got 3 maps, expected 4"):
        head(maps[:3])


def test_segmenter_returns_image_size_logits_in_eval_and_main_aux_in_train():
    seg = segmenter(backbone())
    images = torch.randn(2, 3, 60, 44)  # not multiples of the patch: padded, then cropped back
    seg.train()
    main, aux = seg(images)
    assert main.shape == aux.shape == (2, 5, 60, 44)
    seg.eval()
    assert seg(images).shape == (2, 5, 60, 44)
    seg_no_aux = segmenter(backbone(), aux=False).train()
    main, aux = seg_no_aux(torch.randn(2, 3, 64, 64))
    assert main.shape == (2, 5, 64, 64) and aux is None


def test_segmenter_with_patch_16_backbone_and_default_strides():
    seg = segmenter(backbone(patch=16)).eval()
    assert seg(torch.randn(1, 3, 96, 64)).shape == (1, 5, 96, 64)
    assert [type(m).__name__ for m in seg.neck.levels[0]] == ["ConvTranspose2d", "BatchNorm2d", "GELU",
                                                               "ConvTranspose2d"]


def test_segmenter_prunes_what_the_features_do_not_use_so_every_trainable_parameter_gets_a_gradient():
    model = dytune.convert(backbone(depth=6, num_classes=10), dytune.DyTConfig(bottleneck=4))
    seg = segmenter(model, out_indices=(0, 1, 2, 3)).train()
    assert len(seg.backbone.blocks) == 4 and isinstance(seg.backbone.head, nn.Identity)
    assert isinstance(seg.backbone.norm, nn.Identity)
    target = torch.randint(0, 5, (2, 64, 64))
    loss, parts = SegmentationLoss()(seg(torch.randn(2, 3, 64, 64)), target)
    loss.backward()
    trainable = {n: p for n, p in seg.named_parameters() if p.requires_grad}
    assert any("adapter" in n for n in trainable) and any(n.startswith("neck") for n in trainable)
    assert [n for n, p in trainable.items() if p.grad is None] == []
    assert set(parts) == {"ce", "aux_ce"}
    assert {id(m) for m in seg.trainable_modules()} == {id(seg.neck), id(seg.decode_head), id(seg.auxiliary_head)}


@pytest.mark.parametrize("variant", ["mlp", "attn", "attn_mlp", "layer"])
def test_sparse_equals_masked_on_a_converted_backbone(variant):
    model = dytune.convert(backbone(), dytune.DyTConfig(bottleneck=4, variant=variant))
    randomize_adapters(model, std=0.2)
    seg = segmenter(model).eval()
    randomize_heads(seg)
    images = torch.randn(3, 3, 64, 56, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        sparse = seg(images)
        rates = dytune.keep_rates(seg)
        with dytune.execution(seg, "masked"):
            masked = seg(images)
        with dytune.execution(seg, "complete"):
            complete = seg(images)
    assert all(0.0 < r < 1.0 for r in rates), rates  # tokens are really skipped, so the comparison means something
    assert torch.allclose(sparse, masked, atol=1e-4), (sparse - masked).abs().max()
    assert not torch.allclose(sparse, complete, atol=1e-3)


def test_forward_intermediates_matches_block_outputs_in_sparse_execution():
    model = dytune.convert(backbone(), dytune.DyTConfig(bottleneck=4))
    randomize_adapters(model, std=0.2)
    seg = segmenter(model).eval()
    captured = []
    hooks = [b.register_forward_hook(lambda m, i, o: captured.append(o.clone())) for b in seg.backbone.blocks]
    with torch.no_grad():
        features = seg.forward_features(torch.randn(2, 3, 64, 64))
    for h in hooks:
        h.remove()
    for block_out, feature in zip(captured, features):  # in-place sparse updates do not corrupt earlier outputs
        grid = block_out[:, seg.backbone.num_prefix_tokens:].transpose(1, 2).reshape(feature.shape)
        assert torch.equal(grid, feature)


def test_segmenter_rejects_bad_settings_and_inputs():
    with pytest.raises(ValueError, match=r"outside the backbone's 4 blocks \(0..3\)"):
        segmenter(backbone(), out_indices=(3, 5, 7, 11))
    with pytest.raises(ValueError, match="has 3 entries but strides"):
        segmenter(backbone(), out_indices=(1, 2, 3))
    with pytest.raises(TypeError, match="Segmenter: dytune supports timm VisionTransformer.*got Linear"):
        Segmenter(nn.Linear(2, 2), 5)
    seg = segmenter(backbone(dynamic_img_size=False)).eval()
    assert seg(torch.randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)
    with pytest.raises(ValueError, match="takes 64x64 images, got 96x64; create it with dynamic_img_size=True"):
        seg(torch.randn(1, 3, 96, 64))
    with pytest.raises(ValueError, match=r"expected images of shape \[B, 3, H, W\]"):
        seg(torch.randn(1, 1, 64, 64))


def test_sync_batchnorm_replaces_every_batchnorm_of_the_neck_and_heads():
    seg = sync_batchnorm(segmenter(backbone(patch=16)))
    kinds = {type(m) for m in seg.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert kinds == {nn.SyncBatchNorm}


class Pointwise(nn.Module):
    """A per-pixel model: sliding windows must reproduce its whole-image output exactly."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x)


def test_slide_inference_averages_windows_and_pads_small_images():
    model = Pointwise()
    images = torch.randn(2, 3, 70, 100)
    whole = whole_inference(model, images)
    assert torch.allclose(slide_inference(model, images, 4, crop=32, stride=21), whole, atol=1e-6)
    assert torch.allclose(slide_inference(model, images, 4, crop=(80, 64), stride=(40, 30)), whole, atol=1e-6)
    small = torch.randn(1, 3, 20, 30)  # smaller than the crop: padded, logits cropped back
    assert torch.allclose(slide_inference(model, small, 4, crop=32, stride=21), model(small), atol=1e-6)
    resized = slide_inference(model, images, 4, crop=32, stride=21, output_size=(35, 50))
    assert resized.shape == (2, 4, 35, 50)
    with pytest.raises(ValueError, match="stride .* exceeds crop"):
        slide_inference(model, images, 4, crop=16, stride=20)
    with pytest.raises(ValueError, match="num_classes=5"):
        slide_inference(model, images, 5, crop=32, stride=21)


def test_slide_inference_equals_whole_image_inference_when_one_window_covers_the_image():
    model = dytune.convert(backbone(), dytune.DyTConfig(bottleneck=4))
    randomize_adapters(model, std=0.2)
    seg = segmenter(model).eval()
    randomize_heads(seg)
    images = torch.randn(2, 3, 64, 48)
    whole = whole_inference(seg, images, num_classes=5)
    assert torch.equal(slide_inference(seg, images, 5, crop=(64, 48), stride=(43, 32)), whole)
    macs_whole = dytune.count_macs(seg, images)
    macs_slide = dytune.count_macs(seg, images, forward=lambda m, x: slide_inference(m, x, 5, (64, 48), (43, 32)))
    assert torch.equal(macs_whole, macs_slide) and (macs_whole > 0).all()


def test_cross_entropy_averages_over_labelled_pixels_and_adds_the_auxiliary_term():
    gen = torch.Generator().manual_seed(0)
    logits, aux = torch.randn(2, 4, 6, 5, generator=gen), torch.randn(2, 4, 6, 5, generator=gen)
    target = torch.randint(0, 4, (2, 6, 5), generator=gen)
    target[0, :3] = 255
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(pixel_cross_entropy(logits, target), expected)
    total, parts = SegmentationLoss(aux_weight=0.4)((logits, aux), target)
    assert torch.allclose(total, expected + 0.4 * F.cross_entropy(aux, target, ignore_index=255))
    total, parts = SegmentationLoss()(logits, target)
    assert set(parts) == {"ce"}
    nothing = torch.full_like(target, 255)
    logits.requires_grad_(True)
    loss = pixel_cross_entropy(logits, nothing)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="resize the logits to the label size"):
        pixel_cross_entropy(logits, target[:, :4])


def test_pixel_distillation_is_kl_over_classes_on_labelled_pixels():
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(2, 5, 4, 3, generator=gen, requires_grad=True)
    teacher = torch.randn(2, 5, 4, 3, generator=gen, requires_grad=True)
    target = torch.randint(0, 5, (2, 4, 3), generator=gen)
    target[1] = 255
    assert pixel_distillation(teacher, teacher).abs() < 1e-6
    per_pixel = F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), log_target=True,
                         reduction="none").sum(1)
    assert torch.allclose(pixel_distillation(student, teacher), per_pixel.mean())
    loss = pixel_distillation(student, teacher, target)
    assert torch.allclose(loss, per_pixel[0].mean())
    loss.backward()
    assert teacher.grad is None and student.grad[1].abs().sum() == 0


def test_a_converted_segmenter_learns_to_segment_squares():
    from dytune.tasks.segmentation.metric import SegmentationMetric

    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(8, 32, 32, dtype=torch.long)
    for i in range(8):
        top, left = torch.randint(0, 16, (2,), generator=gen).tolist()
        masks[i, top:top + 14, left:left + 14] = 1 + i % 2  # two classes of square: bright and dark
    images = (torch.randn(8, 3, 32, 32, generator=gen) * 0.2 + torch.where(masks == 2, -1.0, masks.float())[:, None])
    model = dytune.convert(backbone(img_size=32), dytune.DyTConfig(bottleneck=4))
    seg = segmenter(model, num_classes=3).train()
    opt = torch.optim.Adam([p for p in seg.parameters() if p.requires_grad], lr=3e-2)
    criterion = SegmentationLoss()
    for _ in range(60):
        loss, _ = criterion(seg(images), masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    metric = SegmentationMetric(3)
    metric.update(whole_inference(seg.eval(), images, 3), masks)
    assert metric.compute()["miou"] > 70  # all background: 27
