"""Exact per-image multiply-accumulate (MAC) counts of dense and dynamic ViTs.

Convention (fvcore's, which timm and the DyT paper quote as "FLOPs"): one multiply-add of a Linear, convolution or
attention matmul counts 1; a LayerNorm counts 5 per element (4 without affine); activations, softmax and residual
additions count 0. A dense ViT-B/16 at 224 x 224 counts 17.58 G.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

__all__ = ["count_macs", "dynamic_macs", "tokenwise_macs", "attention_macs"]


def norm_macs(module: nn.Module, norms: bool = True) -> int:
    """MACs of one token through a normalisation layer (0 for anything else, or when `norms` is off)."""
    if norms and isinstance(module, nn.LayerNorm):
        size = 1
        for s in module.normalized_shape:
            size *= s
        return size * (5 if module.elementwise_affine else 4)
    return 0


def tokenwise_macs(module: nn.Module, norms: bool = True) -> int:
    """MACs of one token through a token-wise module: every Linear and LayerNorm inside it."""
    total = 0
    for m in module.modules():
        if isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
        else:
            total += norm_macs(m, norms)
    return total


def attention_macs(
        attn: nn.Module, tokens: torch.Tensor, norms: bool = True, queries: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """MACs of timm self-attention over `tokens` tokens (a tensor of per-image counts).

    Args:
        attn: A timm `Attention` (qkv, optional q/k norms per head, proj).
        tokens: Number of tokens attending among themselves (keys and values), per image.
        norms: Count the q/k normalisation layers.
        queries: Number of queries per image when fewer than `tokens` are computed (see `prefix_attention`).
    """
    queries = tokens if queries is None else queries
    heads = getattr(attn, "num_heads", 1)
    qkv = attn.qkv.in_features * attn.qkv.out_features
    linears = [m for m in attn.modules() if isinstance(m, nn.Linear) and m is not attn.qkv]
    other = sum(m.in_features * m.out_features for m in linears)
    per_query = qkv // 3 + other + heads * norm_macs(attn.q_norm, norms) + norm_macs(
        getattr(attn, "norm", nn.Identity()), norms)
    per_key = 2 * qkv // 3 + heads * norm_macs(attn.k_norm, norms)
    attn_dim = attn.qkv.out_features // 3
    return queries * per_query + tokens * per_key + 2 * queries * tokens * attn_dim


class _MacCounter:
    """Forward hooks on the static parts of a model (everything outside dytune blocks)."""

    def __init__(self) -> None:
        self.total = 0

    def linear(self, module: nn.Linear, inputs, output) -> None:
        self.total += inputs[0].numel() // module.in_features * module.in_features * module.out_features

    def conv(self, module: nn.Conv2d, inputs, output) -> None:
        k = module.in_channels // module.groups
        for s in module.kernel_size:
            k *= s
        self.total += output.numel() * k

    def norm(self, module: nn.LayerNorm, inputs, output) -> None:
        self.total += inputs[0].numel() * (5 if module.elementwise_affine else 4)

    def self_attention(self, module: nn.Module, inputs, output) -> None:
        batch, tokens, _ = inputs[0].shape
        self.total += batch * 2 * tokens * tokens * (module.qkv.out_features // 3)

    def latent_attention(self, module: nn.Module, inputs, output) -> None:
        batch, tokens, _ = inputs[0].shape
        latents = module.latent.shape[1]
        self.total += batch * 2 * latents * tokens * module.kv.out_features // 2


def _static_modules(model: nn.Module) -> List[nn.Module]:
    """Modules outside dytune blocks (whose cost the blocks count themselves)."""
    out: List[nn.Module] = []

    def visit(module: nn.Module) -> None:
        if hasattr(module, "macs_per_image"):
            return
        out.append(module)
        for child in module.children():
            visit(child)

    visit(model)
    return out


@torch.no_grad()
def count_macs(model: nn.Module, images: torch.Tensor, norms: bool = True) -> torch.Tensor:
    """Per-image multiply-accumulates of one forward pass, from the tokens each layer actually computed.

    Runs `model(images)` in its current execution mode (see `dytune.execution`), so a dynamic model is counted with
    the kept-token counts of every layer for every image. Works on plain timm ViTs too.

    Args:
        model: A timm VisionTransformer, converted by `dytune.convert` or not.
        images: Input batch [B, C, H, W].
        norms: Count LayerNorms (5 MACs per element, as fvcore). Off, the count equals half of what
            `torch.utils.flop_counter` reports, which ignores normalisation and counts 2 FLOPs per MAC.

    Returns:
        int64 tensor [B] of MACs per image.
    """
    from timm.layers import Attention, AttentionPoolLatent

    counter = _MacCounter()
    handles = []
    for module in _static_modules(model):
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(counter.linear))
        elif isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(counter.conv))
        elif norms and isinstance(module, nn.LayerNorm):
            handles.append(module.register_forward_hook(counter.norm))
        elif isinstance(module, Attention):
            handles.append(module.register_forward_hook(counter.self_attention))
        elif isinstance(module, AttentionPoolLatent):
            handles.append(module.register_forward_hook(counter.latent_attention))
    try:
        model(images)
    finally:
        for h in handles:
            h.remove()
    batch = images.shape[0]
    return torch.full((batch,), counter.total // batch, dtype=torch.int64) + dynamic_macs(model, batch, norms)


def dynamic_macs(model: nn.Module, batch: int, norms: bool = True) -> torch.Tensor:
    """Per-image MACs of the dytune blocks in the model's last forward (zeros for a model without them).

    Cheap: it reads the kept-token counts the blocks recorded, so a loop can time plain forwards and still count.
    """
    macs = torch.zeros(batch, dtype=torch.int64)
    for module in model.modules():
        if hasattr(module, "macs_per_image"):
            macs += module.macs_per_image(norms=norms).cpu()
    return macs
