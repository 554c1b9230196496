"""Side-by-side timing against the official DyT fast-inference model, loaded from the user's checkout at run time.

`models/model_speed_test.py` of NUS-HPC-AI-Lab/Dynamic-Tuning is not shipped with dytune; pass the path of a clone.
It needs `einops`. Only MLP dispatch with a dispatcher in every block and one class token exists there.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Dict, Union

import torch
from torch import nn

from ..core.convert import dynamic_blocks
from ..core.modules.adapter import Adapter
from ..core.modules.blocks import MLPDispatchBlock

OFFICIAL_FILE = Path("models") / "model_speed_test.py"
OFFICIAL_VARIANT = MLPDispatchBlock.variant  # the only dispatch variant of the official fast-inference code


def load_official_module(repo: Union[str, Path]) -> ModuleType:
    """Import `models/model_speed_test.py` from a clone of the official repository."""
    path = Path(repo) / OFFICIAL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; pass the root of a clone of NUS-HPC-AI-Lab/Dynamic-Tuning")
    spec = importlib.util.spec_from_file_location("dyt_official_model_speed_test", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        raise ImportError(f"{path} could not be imported ({e}); it needs einops: pip install einops") from e
    sys.modules.setdefault(spec.name, module)
    return module


def _check_mappable(model: nn.Module) -> None:
    blocks = dynamic_blocks(model)
    problems = []
    if any(not isinstance(b, MLPDispatchBlock) or not b.dynamic for b in blocks):
        problems.append("every block must use MLP dispatch")
    elif any(not isinstance(b.mlp_adapter, Adapter) for b in blocks):
        problems.append("MoE adapters have no official fast-inference counterpart")
    if model.num_prefix_tokens != 1 or model.global_pool != "token":
        problems.append("one class token with token pooling")
    if any(not isinstance(b.ls1, nn.Identity) for b in blocks) or not isinstance(model.norm_pre, nn.Identity):
        problems.append("no LayerScale or pre-norm")
    if problems:
        raise ValueError("the official fast-inference model cannot mirror this model: " + "; ".join(problems))


def official_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The weights of a dytune MLP-dispatch model under the official parameter names.

    Backbone keys are shared with timm. The official dispatcher keeps a token iff sigmoid(logit) > 0.5, so the
    calibrated logit threshold is folded into its bias.
    """
    state = {}
    for key, value in model.state_dict().items():
        if ".mlp_dispatcher." in key or ".mlp_adapter." in key:
            continue
        state[key] = value
    for i, block in enumerate(dynamic_blocks(model)):
        prefix = f"blocks.{i}"
        adapter, gate = block.mlp_adapter, block.mlp_dispatcher
        state[f"{prefix}.adaptmlp.down_proj.weight"] = adapter.down.weight
        state[f"{prefix}.adaptmlp.down_proj.bias"] = adapter.down.bias
        state[f"{prefix}.adaptmlp.up_proj.weight"] = adapter.up.weight
        state[f"{prefix}.adaptmlp.up_proj.bias"] = adapter.up.bias
        state[f"{prefix}.mlp_token_select.mlp_head.weight"] = gate.proj.weight
        threshold = gate.logit_threshold.to(gate.proj.bias.dtype)
        state[f"{prefix}.mlp_token_select.mlp_head.bias"] = gate.proj.bias - threshold
    return {k: v.detach().clone() for k, v in state.items()}


def official_model(repo: Union[str, Path], model: nn.Module) -> nn.Module:
    """The official fast-inference ViT carrying the weights of a converted dytune model (MLP dispatch), in eval mode."""
    _check_mappable(model)
    module = load_official_module(repo)
    block = dynamic_blocks(model)[0]
    adapter = block.mlp_adapter
    tuning = SimpleNamespace(
        ffn_num=adapter.down.out_features, d_model=model.embed_dim, ffn_adapter_init_option="lora",
        ffn_adapter_scalar=str(adapter.scale), ffn_adapter_layernorm_option="none")
    official = module.VisionTransformer(
        img_size=tuple(model.patch_embed.img_size), patch_size=tuple(model.patch_embed.patch_size),
        embed_dim=model.embed_dim, depth=len(model.blocks), num_heads=block.attn.num_heads,
        mlp_ratio=block.mlp.fc1.out_features / model.embed_dim, qkv_bias=block.attn.qkv.bias is not None,
        num_classes=model.num_classes, tuning_config=tuning, select_config=SimpleNamespace(open=True, keep_layers=0))
    official.load_state_dict(official_state_dict(model), strict=True)
    return official.eval()
