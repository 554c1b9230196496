"""Batched token selection: run a sub-block on the kept tokens only, without a per-image loop."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

# Rows gathered in sparse execution are rounded up to a bucket (see `bucketed`), so that an eval server meets a small,
# fixed set of matrix shapes: oneDNN compiles and caches a kernel for each new shape (about 1 MB apiece), which made
# resident memory grow with every batch whose kept-token count was new.
DEFAULT_BUCKET = 16
BUCKETS_PER_OCTAVE = 32


def bucketed(count: int, bucket: int = DEFAULT_BUCKET) -> int:
    """`count` rounded up to a multiple of max(bucket, 2^floor(log2 count) / 32); `count` itself for bucket=1.

    Above 32 * bucket rows the step grows with the count, so padding stays under 1/32 (3.1 %) of the rows while the
    number of distinct sizes grows only with the logarithm of the largest one.

    Args:
        count: Rows to compute.
        bucket: Smallest step; 1 keeps the exact count.
    """
    if bucket < 1:
        raise ValueError(f"bucket={bucket!r}: expected an integer >= 1 (1 = exact token counts)")
    if bucket == 1 or count == 0:
        return count
    step = max(bucket, (1 << (count.bit_length() - 1)) // BUCKETS_PER_OCTAVE)
    return -(-count // step) * step


def pad_index(index: torch.Tensor, bucket: int) -> torch.Tensor:
    """`index` extended to `bucketed(len(index))` entries by repeating its first one (a real row, so the padding
    computes on ordinary values; its results are dropped)."""
    count = index.numel()
    size = bucketed(count, bucket)
    if size == count:
        return index
    return torch.cat([index, index[:1].expand(size - count)])


def with_prefix(patch_mask: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """Extend a [B, N_patch] keep mask with ones for the prefix (class, distillation, register) tokens."""
    if num_prefix_tokens == 0:
        return patch_mask
    ones = patch_mask.new_ones(patch_mask.shape[0], num_prefix_tokens)
    return torch.cat([ones, patch_mask], dim=1)


def flat_index(keep: torch.Tensor) -> torch.Tensor:
    """Positions of the kept tokens in the batch-flattened [B * N] token list."""
    return keep.reshape(-1).nonzero().squeeze(1)


def add_tokenwise(
        out: torch.Tensor,
        x: torch.Tensor,
        keep: torch.Tensor,
        fn: Callable[[torch.Tensor], torch.Tensor],
        bucket: int = 1,
) -> torch.Tensor:
    """out[kept] += fn(x[kept]) for a token-wise fn, computed on the kept tokens of the whole batch at once.

    The kept tokens of all images form one [K, C] matrix, padded to `bucketed(K, bucket)` rows whose results are
    dropped before the scatter.

    Args:
        out: Contiguous [B, N, C] tensor, updated in place and returned.
        x: [B, N, C] input of fn.
        keep: [B, N] 0/1 mask.
        fn: Token-wise function of [K, C] -> [K, C].
        bucket: Row bucket (see `bucketed`); 1 computes exactly the kept rows.
    """
    dim = x.shape[-1]
    index = flat_index(keep)
    if torch.compiler.is_exporting():  # the kept count is a symbolic size: no bucket, and no branch on it
        y = fn(x.reshape(-1, dim).index_select(0, index))
        return out.view(-1, dim).index_add_(0, index, y.to(out.dtype)).view_as(out)
    if index.numel():
        y = fn(x.reshape(-1, dim).index_select(0, pad_index(index, bucket)))
        out.view(-1, dim).index_add_(0, index, y[:index.numel()].to(out.dtype))
    return out


def pack(keep: torch.Tensor, bucket: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    """Order the kept tokens of each image first, for attention among them.

    Args:
        keep: [B, N] 0/1 mask.
        bucket: Width bucket (see `bucketed`, capped at N); 1 packs to the largest kept count exactly.

    Returns:
        order: [B, K] token positions, kept tokens first (K = the largest kept count in the batch, bucketed).
        valid: [B, K] bool, False on padding.
    """
    keep = keep > 0
    counts = keep.sum(dim=1)
    if torch.compiler.is_exporting():  # a symbolic width, exact (no bucket); ONNX has no stable sort: unique keys
        width = counts.max().item()
        torch._check(width >= 1)  # the prefix tokens; `dytune.export` refuses models without them
        torch._check(width <= keep.shape[1])
        positions = torch.arange(keep.shape[1], device=keep.device)
        order = torch.argsort((~keep).long() * keep.shape[1] + positions, dim=1)[:, :width]
    else:
        width = min(bucketed(int(counts.max()), bucket), keep.shape[1])
        order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=keep.device) < counts.unsqueeze(1)
    return order, valid


def attention_mask(valid: torch.Tensor) -> Optional[torch.Tensor]:
    """Boolean [B, 1, N, N] mask letting queries attend to valid keys only; None when every token is valid.

    Each query may also attend to itself, so no row is empty (its output is discarded when the query is invalid).
    """
    if not torch.compiler.is_exporting() and bool(valid.all()):
        return None
    eye = torch.eye(valid.shape[1], dtype=torch.bool, device=valid.device)
    return (valid[:, None, None, :] | eye).contiguous()


def gather_tokens(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x[b, order[b]] for every image b: [B, N, C] -> [B, K, C]."""
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def gather_positions(rope: torch.Tensor, positions: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """The rows of per-patch position embeddings (rotary sin/cos) at the positions of gathered tokens.

    Args:
        rope: [N_patch, D] (shared by the heads) or [H, N_patch, D] (one per head), row j for patch token j.
        positions: [B, L] sequence positions of the gathered tokens, the `num_prefix_tokens` prefix tokens first
            (as `pack` and `top_k_index` order them).
        num_prefix_tokens: Leading tokens, which have no rotary embedding.

    Returns:
        [B, 1, L - P, D] or [B, H, L - P, D], broadcasting against [B, H, L - P, head_dim] queries and keys.
    """
    index = positions[:, num_prefix_tokens:] - num_prefix_tokens
    if rope.ndim == 2:
        return rope[index].unsqueeze(1)
    if rope.ndim == 3:
        return rope[:, index].transpose(0, 1)
    raise ValueError(f"rotary embeddings of shape {tuple(rope.shape)}: expected [N_patch, D] or [H, N_patch, D] "
                     f"(batched embeddings, from patch dropout in training, are not gathered)")


def scatter_add_valid(out: torch.Tensor, order: torch.Tensor, valid: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """out[b, order[b, j]] += y[b, j] where valid[b, j]; out is updated in place and returned."""
    batch, tokens, dim = out.shape
    positions = order + torch.arange(batch, device=order.device).unsqueeze(1) * tokens
    out.view(-1, dim).index_add_(0, positions[valid], y[valid].to(out.dtype))
    return out
