"""timm registration of the backbone dytune ships, so `timm.create_model("dytune_mini_vit", pretrained=True)` loads
it from the package like any timm model (no download)."""
from __future__ import annotations

from typing import Any

from timm.models import generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, _cfg, _create_vision_transformer

from .pretrained import ASSETS, mini_vit_info

__all__ = ["dytune_mini_vit"]


def _mini_vit_cfg() -> dict:
    try:
        info = mini_vit_info()
    except FileNotFoundError:  # a copy without the asset still imports; create_model then names the missing file
        return _cfg(file=str(ASSETS / "mini_vit.safetensors"), input_size=(3, 64, 64), num_classes=10)
    size = info["timm_kwargs"].get("img_size", 64)
    return _cfg(file=str(ASSETS / info["weights"]), num_classes=info["timm_kwargs"]["num_classes"],
                input_size=(3, size, size), mean=tuple(info["mean"]), std=tuple(info["std"]), crop_pct=1.0,
                license="apache-2.0")


default_cfgs = generate_default_cfgs({"dytune_mini_vit.fmnist_canvas": _mini_vit_cfg()})


@register_model
def dytune_mini_vit(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """The mini ViT pre-trained by `dytune pretrain` on Fashion-MNIST items on 64 x 64 textured canvases."""
    args = {k: v for k, v in mini_vit_info()["timm_kwargs"].items() if k != "num_classes"}
    return _create_vision_transformer("dytune_mini_vit", pretrained=pretrained, **dict(args, **kwargs))
