"""Self-attention for a subset of queries: the outputs of the leading tokens only, keys and values from all."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import nn


def supports_query_subset(attn: nn.Module) -> bool:
    """Whether `prefix_attention` reproduces this module: timm's standard `Attention` (not a subclass that may
    change its forward)."""
    return type(attn) is Attention


def prefix_attention(
        attn: Attention, x: torch.Tensor, queries: int, key_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """`attn(x)[:, :queries]` without computing the other queries, their attention rows or their projections.

    Args:
        attn: timm `Attention` (q/k norms, scale norm and output gate supported).
        x: [B, N, C] normalised tokens.
        queries: Number of leading tokens whose output is wanted.
        key_mask: [B, N] bool, the tokens that may be attended to (None: all).

    Returns:
        [B, queries, C_out].
    """
    batch, tokens, _ = x.shape
    heads, dim = attn.num_heads, attn.qkv.out_features // 3
    head_dim = dim // heads
    weight, bias = attn.qkv.weight, attn.qkv.bias
    lead = x[:, :queries]
    q = F.linear(lead, weight[:dim], None if bias is None else bias[:dim])
    kv = F.linear(x, weight[dim:], None if bias is None else bias[dim:])
    q = attn.q_norm(q.view(batch, queries, heads, head_dim).transpose(1, 2))
    k, v = kv.view(batch, tokens, 2, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    k = attn.k_norm(k)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    if attn.fused_attn:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:  # the manual path of timm, which torch's FLOP counter sees
        scores = (q * attn.scale) @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = scores.softmax(dim=-1) @ v
    out = attn.norm(out.transpose(1, 2).reshape(batch, queries, dim))
    gate = getattr(attn, "gate", None)  # timm >= 1.0.25
    if gate is not None:
        out = out * gate(lead).sigmoid()
    return attn.proj(out)
