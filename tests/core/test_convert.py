import pytest
import timm
import torch
from timm.models.vision_transformer import ResPostBlock

import dytune
from dytune.core.modules import DynamicBlock
from tests.conftest import MODEL_ZOO, TINY, tiny_vit, zoo_model

NEW_MODULES = ("_adapter.", "_dispatcher.")


@pytest.mark.parametrize("key", sorted(MODEL_ZOO))
@pytest.mark.parametrize("variant", dytune.VARIANTS)
def test_converts_every_supported_family(key, variant):
    base = zoo_model(key)
    backbone_keys = set(base.state_dict())
    prefix = base.num_prefix_tokens
    model = dytune.convert(base, dytune.DyTConfig(variant=variant, bottleneck=4))
    assert backbone_keys <= set(model.state_dict()), "backbone weights keep their timm names"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(any(s in n for s in NEW_MODULES) or n.startswith("head") for n in trainable)
    assert any(n.startswith("head") for n in trainable)
    assert all(isinstance(b, DynamicBlock) and b.num_prefix_tokens == prefix for b in model.blocks)
    size = 48 if MODEL_ZOO[key][1].get("dynamic_img_size") else 32
    x = torch.randn(2, 3, size, size)
    for train in (True, False):
        model.train(train)
        with torch.set_grad_enabled(train):
            assert model(x).shape == (2, TINY["num_classes"])
        assert all(m.shape == (2, (size // model.patch_embed.patch_size[0]) ** 2) for m in dytune.keep_masks(model))


@pytest.mark.parametrize("name, patch", [
    ("vit_small_patch8_224", 8), ("vit_large_patch14_224", 14), ("vit_huge_patch14_224", 14),
    ("vit_base_patch32_224", 32), ("vit_base_patch16_224", 16),
])
def test_named_vit_sizes_convert(name, patch):
    model = dytune.convert(tiny_vit(name, patch_size=patch, img_size=2 * patch), dytune.DyTConfig(bottleneck=4)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 2 * patch, 2 * patch)).shape == (1, 5)


def test_static_layers_keep_an_adapter_but_no_dispatcher():
    model = dytune.convert(tiny_vit(depth=3), dytune.DyTConfig(layers=[1]))
    assert [b.dynamic for b in model.blocks] == [False, True, False]
    assert [b.mlp_dispatcher is None for b in model.blocks] == [True, False, True]
    adaptformer = dytune.convert(tiny_vit(), dytune.DyTConfig(layers=()))
    adaptformer.eval()
    with torch.no_grad():
        adaptformer(torch.randn(1, 3, 32, 32))
    assert dytune.keep_masks(adaptformer) == []


def test_layers_out_of_range_are_named():
    with pytest.raises(ValueError, match=r"layers=\(5,\).*2 blocks"):
        dytune.convert(tiny_vit(), dytune.DyTConfig(layers=[5]))


def test_rejects_models_it_cannot_convert():
    with pytest.raises(TypeError, match="VisionTransformer.*ResNet"):
        dytune.convert(timm.create_model("resnet10t"))
    with pytest.raises(TypeError, match="ResPostBlock"):
        dytune.convert(tiny_vit(block_fn=ResPostBlock))
    model = dytune.convert(tiny_vit())
    with pytest.raises(ValueError, match="already converted"):
        dytune.convert(model)


def test_rejects_timm_with_other_block_internals():
    base = tiny_vit()
    del base.blocks[0].ls1
    with pytest.raises(RuntimeError, match=r"timm .* lays out ViT blocks differently.*'ls1'"):
        dytune.convert(base)


@pytest.mark.parametrize("shape, message", [
    ((1, 3, 64, 64), r"takes 32x32 images, got 64x64.*dynamic_img_size"),
    ((1, 1, 32, 32), r"\[B, 3, H, W\]"),
    ((3, 32, 32), r"\[B, 3, H, W\]"),
])
def test_input_size_errors_say_what_fits(shape, message):
    model = dytune.convert(tiny_vit()).eval()
    with pytest.raises(ValueError, match=message):
        model(torch.randn(shape))


def test_dynamic_image_size():
    model = dytune.convert(tiny_vit(dynamic_img_size=True)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 40)).shape == (2, 5)
        assert dytune.keep_masks(model)[0].shape == (2, 6 * 5)
    with pytest.raises(ValueError, match="multiple of the 8x8 patch"):
        model(torch.randn(1, 3, 36, 32))


def test_tau_and_its_schedule():
    model = dytune.convert(tiny_vit(), dytune.DyTConfig(tau=5.0, tau_final=0.1))
    assert dytune.set_tau_progress(model, 0.5) == pytest.approx(2.55)
    assert all(b.mlp_dispatcher.tau == pytest.approx(2.55) for b in model.blocks)
    dytune.set_tau(model, 1.0)
    assert model.blocks[0].mlp_dispatcher.tau == 1.0
    with pytest.raises(ValueError, match="tau"):
        dytune.set_tau(model, 0)
