"""Tiny timm ViTs with random weights: nothing is downloaded."""
from __future__ import annotations

import timm
import pytest
import torch

import dytune

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5)

# name -> (timm model name, overrides): the ViT families dytune converts, shrunk to run in milliseconds
MODEL_ZOO = {
    "vit_cls": ("vit_tiny_patch16_224", {}),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", {}),
    "registers_layerscale": ("vit_small_patch14_reg4_dinov2", dict(patch_size=8, img_size=32)),
    "clip_prenorm": ("vit_base_patch32_clip_224", {}),
    "avgpool_no_cls": ("vit_tiny_patch16_224", dict(class_token=False, global_pool="avg", fc_norm=True)),
    "patch4_dynamic_size": ("vit_tiny_patch16_224", dict(patch_size=4, dynamic_img_size=True)),
}


def tiny_vit(name: str = "vit_tiny_patch16_224", seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, **{**TINY, **overrides})


def zoo_model(key: str, seed: int = 0) -> torch.nn.Module:
    name, overrides = MODEL_ZOO[key]
    return tiny_vit(name, seed=seed, **overrides)


def randomize_adapters(model: torch.nn.Module, std: float = 0.05, seed: int = 1) -> None:
    """Give the zero-initialised adapter outputs and routers non-zero weights, as after training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def converted(key: str = "vit_cls", seed: int = 0, **config) -> torch.nn.Module:
    model = dytune.convert(zoo_model(key, seed), dytune.DyTConfig(**{"bottleneck": 8, **config}))
    randomize_adapters(model)
    return model


def countable(model: torch.nn.Module) -> torch.nn.Module:
    """The model as torch.utils.flop_counter can check count_macs on it: manual attention (the counter may miss the
    fused CPU kernel) and exact kept-token counts (the counter also counts the rows sparse buckets pad with)."""
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
        if hasattr(m, "bucket"):
            m.bucket = 1
    return model


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(3))
