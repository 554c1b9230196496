"""The backbone protocol over the tiny model zoo: every answer of the timm ViT family, before and after conversion,
and the registry's refusals."""
import pytest
import timm
import torch
from timm.models.eva import Eva
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2
from torch import nn

import dytune
from dytune.backbones import (Backbone, BlockParts, TimmViT, TokenLayout, backbone_families, backbone_for,
                              find_backbone, is_backbone, register_backbone)
from dytune.core.convert import inner_vit
from dytune.core.modules.blocks import DynamicBlock
from dytune.tasks.video.model import VideoClassifier

from ..conftest import MODEL_ZOO, zoo_model

# zoo key -> (prefix tokens, patch side, pooling, dynamic image size)
EXPECTED = {
    "vit_cls": (1, 8, "token", False),
    "deit_distilled": (2, 8, "token", False),
    "registers_layerscale": (5, 8, "token", False),
    "clip_prenorm": (1, 8, "token", False),
    "avgpool_no_cls": (0, 8, "avg", False),
    "patch4_dynamic_size": (1, 4, "token", True),
}


def test_the_table_covers_the_zoo():
    assert set(EXPECTED) == set(MODEL_ZOO)


@pytest.mark.parametrize("key", sorted(MODEL_ZOO))
def test_protocol_answers(key):
    prefix, patch, pooling, dynamic = EXPECTED[key]
    model = zoo_model(key).eval()
    backbone = backbone_for(model)
    assert isinstance(backbone, TimmViT) and backbone.family == "timm_vit" and backbone.model is model
    assert backbone.blocks is model.blocks and backbone.depth == 2
    for i in range(backbone.depth):
        assert backbone.token_layout(i) == TokenLayout(prefix, 48, 3, 0)
        parts = backbone.block_parts(i)
        assert all(getattr(parts, n) is getattr(model.blocks[i], n) for n in BlockParts.required())
        assert parts.windows is None and backbone.num_stages == 1 and backbone.stage_blocks(0) == range(2)
        assert backbone.position_dependent_attention(i) is False
    assert backbone.stem is model.patch_embed and backbone.in_chans == 3
    assert backbone.image_size == (32, 32) and backbone.dynamic_size is dynamic
    assert backbone.stride() == (patch, patch) and backbone.grid((32, 32)) == (32 // patch, 32 // patch)
    assert backbone.pooling == pooling and backbone.num_features == 48
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert backbone.forward_tokens(images).shape == (2, prefix + (32 // patch) ** 2, 48)
        maps = backbone.feature_maps(images, [0, 1])
    assert [m.shape for m in maps] == [(2, 48, 32 // patch, 32 // patch)] * 2
    heads = (model.head, model.head_dist) if key == "deit_distilled" else (model.head,)
    assert backbone.classifier_heads() == heads
    assert backbone.architecture() == {
        "architecture": model.pretrained_cfg["architecture"], "tag": model.pretrained_cfg.get("tag"),
        "embed_dim": 48, "depth": 2, "num_heads": 3, "num_prefix_tokens": prefix, "patch_size": [patch, patch]}
    assert backbone.architecture_mismatches({"depth": 12, "embed_dim": 48, "patch_size": [1, 1]}) == {"depth": (12, 2)}
    assert model.load_state_dict(backbone.adapt_state_dict(model.state_dict())).missing_keys == []
    with pytest.raises(ValueError, match=r"expected images of shape \[B, 3, H, W\], got \(2, 1, 32, 32\)"):
        backbone.check_input(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="one stage"):
        backbone.stride(1)


def test_non_square_grid_with_dynamic_img_size():
    model = zoo_model("patch4_dynamic_size").eval()
    backbone = backbone_for(model)
    images = torch.randn(1, 3, 24, 40)
    backbone.check_input(images)
    assert backbone.grid((24, 40)) == (6, 10)
    with torch.no_grad():
        assert backbone.forward_tokens(images).shape == (1, 1 + 60, 48)
        assert [m.shape for m in backbone.feature_maps(images, [1])] == [(1, 48, 6, 10)]
    with pytest.raises(ValueError, match="takes 32x32 images, got 24x40"):
        backbone_for(zoo_model("vit_cls")).check_input(images)


@pytest.mark.parametrize("key", sorted(MODEL_ZOO))
def test_protocol_after_conversion(key):
    model = zoo_model(key)
    before = [backbone_for(model).token_layout(i) for i in range(2)]
    dytune.convert(model, dytune.DyTConfig(bottleneck=4))
    backbone = backbone_for(model)
    assert [backbone.token_layout(i) for i in range(2)] == before
    assert all(isinstance(b, DynamicBlock) for b in backbone.blocks)
    assert all(b.num_prefix_tokens == before[0].num_prefix_tokens for b in backbone.blocks)
    with pytest.raises(TypeError, match="block 0 is a MLPDispatchBlock"):
        backbone.check_block(0)
    assert all(p.requires_grad for head in backbone.classifier_heads() for p in head.parameters())


def test_find_backbone_inside_a_task_model():
    vit = zoo_model("vit_cls")
    video = VideoClassifier(vit, num_classes=3, num_frames=2)
    assert find_backbone(video).model is vit and inner_vit(video) is vit
    with pytest.raises(TypeError, match="Sequential holds no supported backbone"):
        find_backbone(nn.Sequential(nn.Linear(2, 2)))


UNSUPPORTED = {
    "ConvNeXt": lambda: timm.create_model("convnext_atto", pretrained=False, num_classes=5),
    "SwinTransformerV2": lambda: SwinTransformerV2(img_size=32, patch_size=4, window_size=4, embed_dim=24,
                                                   depths=(1,), num_heads=(3,), num_classes=5),
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_models_are_refused_naming_the_families(name):
    model = UNSUPPORTED[name]()
    assert not is_backbone(model)
    pattern = (rf"dytune.convert: dytune supports timm VisionTransformer .*; timm Eva .*; timm SwinTransformer .*; "
               rf"timm SwinTransformerV2 is not supported \(its blocks normalise after attention and MLP.*; "
               rf"got {name}$")
    with pytest.raises(TypeError, match=pattern):
        dytune.convert(model)
    with pytest.raises(TypeError, match=f"TimmViT wraps timm VisionTransformer .*, got {name}"):
        TimmViT(model)


def test_eva_is_now_accepted():
    model = Eva(img_size=32, patch_size=8, embed_dim=48, depth=1, num_heads=3, num_classes=5)
    assert is_backbone(model) and backbone_for(model).family == "timm_eva"
    with pytest.raises(TypeError, match="TimmViT wraps timm VisionTransformer .*, got Eva"):
        TimmViT(model)


def test_swin_is_now_accepted():
    model = SwinTransformer(img_size=32, patch_size=4, window_size=4, embed_dim=24, depths=(1,), num_heads=(3,))
    assert is_backbone(model) and backbone_for(model).family == "timm_swin"


def test_registry_refuses_mistakes():
    assert backbone_families()["timm_vit"] is TimmViT
    with pytest.raises(ValueError, match="family 'timm_vit' is already registered \\(TimmViT\\)"):
        register_backbone(type("AnotherViT", (TimmViT,), {}))
    with pytest.raises(TypeError, match="expects a Backbone subclass, got <class 'torch.nn.modules.linear.Linear'>"):
        register_backbone(nn.Linear)
    with pytest.raises(ValueError, match="NoName: set the class attribute `family`"):
        register_backbone(type("NoName", (TimmViT,), {"family": ""}))
    assert list(backbone_families()) == ["timm_vit", "timm_eva", "timm_swin"]


def test_a_family_must_implement_the_whole_contract():
    class Partial(Backbone):
        family = "partial"

        @classmethod
        def accepts(cls, model):
            return True

    with pytest.raises(TypeError, match="abstract"):
        Partial(nn.Linear(2, 2))
