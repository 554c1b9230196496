"""Fixed-capacity token selection: every image keeps exactly its k highest-scoring patch tokens.

Threshold routing keeps a data-dependent number of tokens, so the shapes of a sparse forward change from batch to
batch and static-shape compilers and exporters cannot take it. Here k is fixed per dispatcher, the gathered
tensors are [B, P + k, C] whatever the images, and the whole forward has static shapes (ONNX TopK, GatherElements,
ScatterElements).
"""
from __future__ import annotations

import torch

__all__ = ["capacity_count", "top_k_index", "index_mask", "scatter_add_rows"]


def capacity_count(rate: float, tokens: int) -> int:
    """The k of a dispatcher with capacity `rate` (a fraction of the patch tokens) on `tokens` patch tokens: the
    nearest integer to rate * tokens, within [0, tokens].

    Args:
        rate: Capacity as a fraction of the patch tokens, in [0, 1].
        tokens: Patch tokens the dispatcher sees.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"capacity {rate!r}: expected a fraction of the patch tokens in [0, 1]")
    return min(tokens, max(0, int(rate * tokens + 0.5)))


def top_k_index(scores: torch.Tensor, k: int, num_prefix_tokens: int) -> torch.Tensor:
    """Sequence positions of the prefix tokens and of each image's k highest-scoring patch tokens.

    Args:
        scores: [B, N_patch] keep logits of the patch tokens.
        k: Patch tokens kept per image.
        num_prefix_tokens: Leading class/distillation/register tokens, always kept (positions 0..P-1).

    Returns:
        [B, P + k] int64 positions in the [B, P + N_patch] sequence, the prefix first.
    """
    batch = scores.shape[0]
    patches = scores.float().topk(k, dim=1, sorted=False).indices + num_prefix_tokens
    if num_prefix_tokens == 0:
        return patches
    prefix = torch.arange(num_prefix_tokens, device=scores.device).expand(batch, num_prefix_tokens)
    return torch.cat([prefix, patches], dim=1)


def index_mask(index: torch.Tensor, num_prefix_tokens: int, patch_tokens: int,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The [B, N_patch] 0/1 keep mask of the patch tokens that `top_k_index` selected (what dispatchers record).

    Args:
        index: [B, P + k] positions from `top_k_index`.
        num_prefix_tokens: P.
        patch_tokens: N_patch.
        dtype: Of the mask.
    """
    patches = index[:, num_prefix_tokens:] - num_prefix_tokens
    mask = torch.zeros(index.shape[0], patch_tokens, dtype=dtype, device=index.device)
    return mask.scatter(1, patches, 1.0)


def scatter_add_rows(out: torch.Tensor, index: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """out with rows[b, j] added at position index[b, j] of image b (out of place; positions are distinct).

    Args:
        out: [B, N, C].
        index: [B, K] positions.
        rows: [B, K, C] values.
    """
    return out.scatter_add(1, index.unsqueeze(-1).expand(-1, -1, out.shape[-1]), rows.to(out.dtype))
