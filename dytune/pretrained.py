"""The mini ViT backbone shipped with dytune, pre-trained by `dytune pretrain` on Fashion-MNIST items on canvases."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import timm
from safetensors.torch import load_file
from torch import nn

__all__ = ["ASSETS", "mini_vit", "mini_vit_info"]

ASSETS = Path(__file__).resolve().parent / "assets"
CONFIG_NAME = "mini_vit.json"


def mini_vit_info(assets: Optional[Path] = None) -> Dict[str, Any]:
    """The backbone's JSON: timm model name and kwargs, input mean/std, source task and its test accuracy."""
    path = Path(assets or ASSETS) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the mini backbone is not shipped in this copy of dytune; "
                                f"train it with `dytune pretrain --export {path.parent}`")
    return json.loads(path.read_text())


def mini_vit(num_classes: Optional[int] = None, assets: Optional[Path] = None, **overrides: Any) -> nn.Module:
    """The pre-trained mini ViT as a timm model (float32, eval mode), with its input normalisation in
    `model.pretrained_cfg["mean"/"std"]` (0.5: feed `(images - 0.5) / 0.5` for images in [0, 1]).

    Args:
        num_classes: replace the 10-class source head by a freshly initialised one of this size (0: no head).
            None keeps the Fashion-MNIST head.
        assets: folder of the backbone files (dytune/assets by default).
        overrides: further `timm.create_model` arguments that do not change the weights' shapes, e.g.
            drop_path_rate.
    """
    info = mini_vit_info(assets)
    weights = Path(assets or ASSETS) / info["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: weights named by {CONFIG_NAME} are missing")
    overlay = {"mean": tuple(info["mean"]), "std": tuple(info["std"]),
               "num_classes": info["timm_kwargs"]["num_classes"]}
    model = timm.create_model(info["timm_model"], pretrained=False, pretrained_cfg_overlay=overlay,
                              **{**info["timm_kwargs"], **overrides})
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state, strict=True)
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model.eval()
