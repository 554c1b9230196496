"""Adapter-only checkpoints (safetensors + JSON) and loading of backbone weights."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..backbones import Backbone, backbone_for, find_backbone
from .config import DyTConfig
from .convert import convert
from .modules.adapter import Adapter, MoEAdapter
from .modules.dispatcher import TokenDispatcher
from ..utils.io import atomic_write, read_json
from ..version import __version__

__all__ = ["save_pretrained", "from_pretrained", "read_pretrained_config", "create_model", "load_backbone_weights",
           "trained_state_dict"]

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
FORMAT_VERSION = 1
PathLike = Union[str, os.PathLike]


def trained_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The tensors training changes: dytune's modules (with their buffers), every trainable parameter and the
    persistent buffers of the modules that own one (e.g. BatchNorm running statistics in a task head)."""
    keys = {name for name, p in model.named_parameters() if p.requires_grad}
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, (Adapter, MoEAdapter, TokenDispatcher)):
            keys.update(f"{dot}{k}" for k in module.state_dict())
        elif any(p.requires_grad for p in module.parameters(recurse=False)):
            keys.update(f"{dot}{k}" for k, _ in module.named_buffers(recurse=False)
                        if k not in module._non_persistent_buffers_set)
    state = model.state_dict()
    return {k: state[k].detach().cpu().contiguous() for k in sorted(keys)}


def _converted_backbone(model: nn.Module) -> nn.Module:
    """The converted backbone that is `model` or sits inside it (a task model around a backbone)."""
    for module in model.modules():
        if isinstance(getattr(module, "dytune_config", None), DyTConfig):
            return module
    raise ValueError("save_pretrained expects a model converted by dytune.convert (or a model holding one)")


def save_pretrained(model: nn.Module, path: PathLike, dtype: Optional[torch.dtype] = None) -> Path:
    """Write the trained tensors of a converted model (adapters, dispatchers, routers, head) and its config.

    Files: `adapter_model.safetensors` and `adapter_config.json` in directory `path`, each written atomically.
    Load them with `from_pretrained` onto a fresh backbone (or a fresh task model around one, e.g. a video
    classifier: its pooling and head are saved too).

    Args:
        model: A model converted by `dytune.convert`, or a model holding one.
        path: Output directory.
        dtype: Store floating-point tensors in this dtype (e.g. torch.float16 halves the file); loading casts them
            back to the model's dtype.
    """
    inner = _converted_backbone(model)
    config: DyTConfig = inner.dytune_config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = trained_state_dict(model)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    meta = {
        "format": "dytune",
        "format_version": FORMAT_VERSION,
        "dytune_version": __version__,
        "timm_version": timm.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "backbone": backbone_for(inner).architecture(),
        "num_classes": getattr(model, "num_classes", None),  # None: a task model without classes (e.g. regression)
        "model": type(model).__name__,
        "config": config.to_dict(),
        "tensors": {k: list(v.shape) for k, v in state.items()},
    }
    atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write(path / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    return path


def read_pretrained_config(path: PathLike) -> Dict[str, Any]:
    """The checked config of a `save_pretrained` directory (backbone, class count, DyT settings, model type)."""
    file = Path(path) / CONFIG_NAME
    meta = read_json(file, "a directory written by dytune.save_pretrained")
    missing = [k for k in ("format", "backbone", "num_classes", "config") if k not in meta]
    if meta.get("format") != "dytune" or missing:
        raise ValueError(f"{file}: not a dytune adapter config (missing {missing or ['format=dytune']})")
    return meta


def from_pretrained(path: PathLike, base: nn.Module, is_trainable: bool = False) -> nn.Module:
    """Convert `base` with a saved config and load the saved tensors into it.

    Args:
        path: Directory written by `save_pretrained`.
        base: A fresh timm ViT of the same architecture with its pretrained weights (any head size: the head is
            replaced by one of the saved class count), or a fresh task model of the saved type around one (e.g.
            `VideoClassifier(timm_vit, num_classes, num_frames)`); its ViT is converted in place.
        is_trainable: Keep the adapters and head trainable and the model in train mode; otherwise freeze
            everything and return the model in eval mode.
    """
    path = Path(path)
    meta = read_pretrained_config(path)
    try:
        backbone: Backbone = find_backbone(base)
    except TypeError as e:
        raise TypeError(f"from_pretrained: {e} to convert") from None
    vit = backbone.model
    saved_type = meta.get("model", type(vit).__name__)  # configs without it were saved from a bare backbone
    if saved_type != type(base).__name__:
        raise ValueError(f"{path}: saved from a {saved_type}; the base is a {type(base).__name__}")
    saved = meta["backbone"]
    mismatched = backbone.architecture_mismatches(saved)
    if mismatched:
        details = ", ".join(f"{k}: saved {a}, base {b}" for k, (a, b) in mismatched.items())
        raise ValueError(f"{path}: the base model does not match the saved backbone "
                         f"{saved.get('architecture')!r} ({details})")
    if meta["num_classes"] is not None and getattr(base, "num_classes", None) != meta["num_classes"]:
        if vit is not base:
            raise ValueError(f"{path}: saved with {meta['num_classes']} classes; the base has "
                             f"{getattr(base, 'num_classes', None)}")
        backbone.reset_classifier(meta["num_classes"])
    convert(vit, DyTConfig.from_dict(meta["config"]))
    model = base
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: not found next to {CONFIG_NAME}")
    load_trained_state(model, load_file(str(weights)), source=str(weights))
    if not is_trainable:
        model.requires_grad_(False)
    return model.train(is_trainable)


def _raise_if_mismatched(title: str, unexpected: List[str], missing: List[str], wrong: List[str]) -> None:
    """Raise a ValueError listing the keys that do not line up, if any."""
    if not (unexpected or missing or wrong):
        return
    lines = [f"{title}:"]
    for name, items in (("unexpected keys", unexpected), ("missing keys", missing), ("shape mismatches", wrong)):
        if items:
            lines.append(f"  {name} ({len(items)}): " + "; ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
    raise ValueError("\n".join(lines))


def load_trained_state(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Copy saved tensors into a converted model, naming every key that is missing or has the wrong shape."""
    own = model.state_dict()
    expected = trained_state_dict(model)
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(expected) - set(state))
    wrong = [f"{k}: saved {tuple(v.shape)}, model {tuple(own[k].shape)}"
             for k, v in state.items() if k in own and own[k].shape != v.shape]
    _raise_if_mismatched(f"{source} does not fit the model", unexpected, missing, wrong)
    model.load_state_dict(state, strict=False)


def _read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return load_file(str(path))
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict", "module"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise ValueError(f"{path}: expected a state dict of tensors")
        return state
    raise ValueError(f"{path}: unsupported weight file; expected .pth/.pt/.bin/.ckpt, .safetensors or .npz")


def load_backbone_weights(model: nn.Module, checkpoint_path: PathLike) -> nn.Module:
    """Load pretrained backbone weights from a local file into a backbone (before or without conversion).

    Accepts timm/PyTorch state dicts (.pth/.pt/.bin, unpickled with weights_only=True), .safetensors, and the
    family's own formats (Google's .npz for a timm ViT). The family maps the file's keys onto the model's
    (`Backbone.adapt_state_dict`: for a timm ViT `pre_logits.*`, the in21k representation layer, is dropped and
    position embeddings are resampled when the image size differs); a head whose class count differs from the
    model's (e.g. the 21,843-class in21k head) is dropped.
    """
    backbone = backbone_for(model, "load_backbone_weights")
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone checkpoint not found")
    if path.suffix.lower() == ".npz":
        backbone.load_native(str(path))
        return model
    state = backbone.adapt_state_dict(_read_state_dict(path))
    own = model.state_dict()
    dropped_head = [k for k in list(state) if k.startswith("head") and k in own and state[k].shape != own[k].shape]
    for k in dropped_head:
        del state[k]
    unexpected = sorted(k for k in state if k not in own)
    wrong = [f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
             for k in state if k in own and state[k].shape != own[k].shape]
    missing = sorted(k for k in own if k not in state and not k.startswith("head"))
    _raise_if_mismatched(f"{path} does not fit {type(model).__name__}", unexpected, missing, wrong)
    model.load_state_dict(state, strict=False)
    return model


def create_model(
        model_name: str,
        pretrained: bool = False,
        checkpoint_path: Optional[PathLike] = None,
        num_classes: Optional[int] = None,
        config: Optional[DyTConfig] = None,
        **kwargs: Any,
) -> nn.Module:
    """timm.create_model + backbone weights + dytune.convert in one call.

    Args:
        model_name: A timm ViT name, e.g. "vit_base_patch16_224" or "vit_base_patch16_224.orig_in21k".
        pretrained: Download timm's pretrained weights (needs the network; ignored with `checkpoint_path`).
        checkpoint_path: Local backbone weights (.pth/.bin/.safetensors/.npz), e.g. the original
            jx_vit_base_patch16_224_in21k-e5005f0a.pth.
        num_classes: Classes of the new head.
        config: Conversion settings; `DyTConfig()` if omitted.
        **kwargs: Passed to timm.create_model (img_size, drop_path_rate, dynamic_img_size, ...).
    """
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = timm.create_model(model_name, pretrained=pretrained and checkpoint_path is None, **kwargs)
    if checkpoint_path is not None:
        load_backbone_weights(model, checkpoint_path)
    return convert(model, config)
