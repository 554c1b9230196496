"""Token merging (ToMe, Bolya et al., ICLR 2023): bipartite soft matching and size-weighted merging.

The algorithm only; `dytune.core.tome.patch` puts it into timm ViTs and dytune models.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch


class Matching:
    """Which patch tokens merge into which, for one layer: the result of `bipartite_soft_matching`.

    Patch tokens alternate between set A (even positions) and set B (odd positions). The `r` A tokens most similar to
    their best B partner are merged into it; the output keeps the prefix tokens, the other A tokens and all B tokens.

    Args:
        src: [B, r] positions in A of the tokens merged away.
        dst: [B, r] positions in B they merge into.
        unmerged: [B, |A| - r] positions in A of the tokens kept, ascending.
        num_prefix_tokens: Leading tokens left untouched.
    """

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, unmerged: torch.Tensor, num_prefix_tokens: int) -> None:
        self.src, self.dst, self.unmerged = src, dst, unmerged
        self.num_prefix_tokens = num_prefix_tokens

    @property
    def r(self) -> int:
        return self.src.shape[1]

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum the merged A tokens of x [B, N, C] into their B partners; returns [B, N - r, C]."""
        prefix, patches = x[:, :self.num_prefix_tokens], x[:, self.num_prefix_tokens:]
        a, b = patches[:, ::2], patches[:, 1::2]
        dim = x.shape[-1]
        moved = a.gather(1, self.src.unsqueeze(-1).expand(-1, -1, dim))
        b = b.scatter_add(1, self.dst.unsqueeze(-1).expand(-1, -1, dim), moved)
        kept = a.gather(1, self.unmerged.unsqueeze(-1).expand(-1, -1, dim))
        return torch.cat([prefix, kept, b], dim=1)

    def merge(self, x: torch.Tensor, size: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Size-weighted average of merged tokens.

        Args:
            x: [B, N, C] tokens.
            size: [B, N, 1] number of original patches each token stands for (None: all 1).

        Returns:
            The merged tokens [B, N - r, C] and their sizes [B, N - r, 1].
        """
        if size is None:
            size = x.new_ones(x.shape[0], x.shape[1], 1)
        size = size.to(x.dtype)
        total = self._reduce(size)
        return self._reduce(x * size) / total, total


def bipartite_soft_matching(metric: torch.Tensor, r: int, num_prefix_tokens: int = 0) -> Optional[Matching]:
    """Match the `r` most redundant patch tokens to their most similar partner (cosine similarity of `metric`).

    Prefix tokens (class, distillation, registers) are never merged. At most half of the patch tokens merge per layer.

    Args:
        metric: [B, N, C] per-token features to compare (ToMe uses the attention keys averaged over heads).
        r: Tokens to remove.
        num_prefix_tokens: Leading tokens excluded from matching.

    Returns:
        A `Matching`, or None when nothing merges (r <= 0 or fewer than two patch tokens).
    """
    patches = metric.shape[1] - num_prefix_tokens
    r = min(r, patches // 2)
    if r <= 0:
        return None
    with torch.no_grad():
        m = metric[:, num_prefix_tokens:].float()
        m = m / m.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        scores = m[:, ::2] @ m[:, 1::2].transpose(1, 2)
        best, partner = scores.max(dim=-1)
        order = best.argsort(dim=-1, descending=True)
        src = order[:, :r]
        dst = partner.gather(1, src)
        unmerged = order[:, r:].sort(dim=-1).values
    return Matching(src, dst, unmerged, num_prefix_tokens)
