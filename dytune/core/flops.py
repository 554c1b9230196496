"""Exact per-image multiply-accumulate (MAC) counts of dense and dynamic ViTs.

Convention (fvcore's, which timm and the DyT paper quote as "FLOPs"): one multiply-add of a Linear, convolution or
attention matmul counts 1; a LayerNorm counts 5 per element (4 without affine); activations, softmax and residual
additions count 0. A dense ViT-B/16 at 224 x 224 counts 17.58 G.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

import torch
from torch import nn

from ..backbones import AttentionCounter, backbone_families

__all__ = ["count_macs", "dynamic_macs", "DynamicMacMeter", "tokenwise_macs", "attention_macs"]


_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def _norm_cost(module: nn.Module) -> int:
    """MACs per element: LayerNorm and GroupNorm 5 (4 without affine), as fvcore; BatchNorm 1, the per-channel
    multiply-add it is at inference."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return 1
    return 5 if getattr(module, "elementwise_affine", getattr(module, "affine", False)) else 4


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
        attn: A timm `Attention`, `EvaAttention` or `AttentionRope` (fused qkv or q/k/v projections, optional q/k
            norms per head, scale norm, gate, proj); rotary embeddings are element-wise and count 0.
        tokens: Number of tokens attending among themselves (keys and values), per image.
        norms: Count the q/k normalisation layers.
        queries: Number of queries per image when fewer than `tokens` are computed (see `prefix_attention`).
    """
    queries = tokens if queries is None else queries
    heads = getattr(attn, "num_heads", 1)
    fused = getattr(attn, "qkv", None)
    if fused is not None:
        projections = (fused,)
        macs = fused.in_features * fused.out_features
        query_macs, key_macs = macs // 3, 2 * macs // 3
        attn_dim = fused.out_features // 3
    else:  # separate q/k/v projections (timm Eva's qkv_fused=False; k/v narrower with grouped-query attention)
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        query_macs = attn.q_proj.in_features * attn.q_proj.out_features
        key_macs = sum(m.in_features * m.out_features for m in projections[1:])
        attn_dim = attn.q_proj.out_features
    other = sum(m.in_features * m.out_features for m in attn.modules()
                if isinstance(m, nn.Linear) and all(m is not p for p in projections))
    per_query = query_macs + other + heads * norm_macs(attn.q_norm, norms) + norm_macs(
        getattr(attn, "norm", nn.Identity()), norms)
    per_key = key_macs + getattr(attn, "num_kv_heads", heads) * norm_macs(attn.k_norm, norms)
    return queries * per_query + tokens * per_key + 2 * queries * tokens * attn_dim


class _MacCounter:
    """Forward hooks on the static parts of a model (everything outside dytune blocks)."""

    def __init__(self) -> None:
        self.total = 0

    def linear(self, module: nn.Linear, inputs, output) -> None:
        self.total += inputs[0].numel() // module.in_features * module.in_features * module.out_features

    def conv(self, module: nn.modules.conv._ConvNd, inputs, output) -> None:
        kernel = 1
        for s in module.kernel_size:
            kernel *= s
        if module.transposed:  # every input element is scattered onto kernel x out_channels / groups outputs
            self.total += inputs[0].numel() * kernel * (module.out_channels // module.groups)
        else:
            self.total += output.numel() * kernel * (module.in_channels // module.groups)

    def norm(self, module: nn.Module, inputs, output) -> None:
        self.total += inputs[0].numel() * _norm_cost(module)

    def declared(self, module: nn.Module, inputs, output) -> None:
        self.total += int(module.forward_macs(inputs, output))

    def counted(self, count: AttentionCounter) -> Callable[[nn.Module, tuple, Any], None]:
        """A forward hook adding `count(module, inputs, output)` (a backbone family's attention matmuls)."""
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            self.total += int(count(module, inputs, output))
        return hook


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
def count_macs(model: nn.Module, images: torch.Tensor, norms: bool = True,
               forward: Optional[Callable[[nn.Module, torch.Tensor], Any]] = None) -> torch.Tensor:
    """Per-image multiply-accumulates of one forward pass, from the tokens each layer actually computed.

    Runs `model(images)` in its current execution mode (see `dytune.execution`), so a dynamic model is counted with
    the kept-token counts of every layer for every image. Works on unconverted models too; attention outside
    dytune blocks is counted as its backbone family says (`Backbone.attention_counters`).

    Args:
        model: A model of a registered backbone family (or holding one), converted by `dytune.convert` or not.
        images: Input batch [B, C, H, W].
        norms: Count LayerNorms (5 MACs per element, as fvcore). Off, the count equals half of what
            `torch.utils.flop_counter` reports, which ignores normalisation and counts 2 FLOPs per MAC.

    Returns:
        int64 tensor [B] of MACs per image.
    """
    counter = _MacCounter()
    attention = {kind: counter.counted(count) for family in backbone_families().values()
                 for kind, count in family.attention_counters().items()}
    handles = []
    batch = images.shape[0]
    dynamic = DynamicMacMeter(model, batch, norms)
    for module in _static_modules(model):
        if hasattr(module, "forward_macs"):
            handles.append(module.register_forward_hook(counter.declared))
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(counter.linear))
        elif isinstance(module, nn.modules.conv._ConvNd):
            handles.append(module.register_forward_hook(counter.conv))
        elif norms and isinstance(module, _NORMS):
            handles.append(module.register_forward_hook(counter.norm))
        else:
            hook = next((h for kind, h in attention.items() if isinstance(module, kind)), None)
            if hook is not None:
                handles.append(module.register_forward_hook(hook))
    try:
        with dynamic:
            model(images) if forward is None else forward(model, images)
    finally:
        for h in handles:
            h.remove()
    return torch.full((batch,), counter.total // batch, dtype=torch.int64) + dynamic.macs


def _per_sample(rows: torch.Tensor, batch: int) -> torch.Tensor:
    """Per-row values of one forward summed per sample (frames or views folded into the batch count for theirs)."""
    if rows.numel() % batch:
        raise ValueError(f"the last forward ran {rows.numel()} backbone rows, not a multiple of {batch} samples")
    return rows.view(batch, -1).sum(1)


def dynamic_macs(model: nn.Module, batch: int, norms: bool = True) -> torch.Tensor:
    """Per-sample MACs of the dytune blocks in the model's last forward (zeros for a model without them).

    Cheap: it reads the kept-token counts the blocks recorded, so a loop can time plain forwards and still count.
    A sample may be several backbone rows (frames folded into the batch); their costs are summed.
    """
    macs = torch.zeros(batch, dtype=torch.int64)
    for module in model.modules():
        if hasattr(module, "macs_per_image"):
            macs += _per_sample(module.macs_per_image(norms=norms).cpu(), batch)
    return macs


class DynamicMacMeter:
    """Records every forward of the dytune blocks made inside its `with` block, to count them afterwards.

    Multi-view and sliding-window inference run the backbone several times per batch, and a block keeps only its
    last forward; the meter keeps each one (a cheap record, no arithmetic while the model runs, so timed forwards
    stay honest) and counts on demand.

    Args:
        model: The model whose dytune blocks are metered.
        batch: Samples in the batch the forwards belong to.
        norms: Count normalisation layers.
    """

    def __init__(self, model: nn.Module, batch: int, norms: bool = True) -> None:
        self.blocks = [m for m in model.modules() if hasattr(m, "last_forward")]
        self.batch, self.norms = batch, norms
        self.records: List[Any] = []
        self._handles: List[Any] = []

    def _record(self, module: nn.Module, inputs, output) -> None:
        self.records.append((module, module.last_forward()))

    @property
    def macs(self) -> torch.Tensor:
        """int64 [batch]: MACs per sample of the recorded forwards."""
        macs = torch.zeros(self.batch, dtype=torch.int64)
        for block, record in self.records:
            macs += _per_sample(block.macs_per_image(norms=self.norms, record=record).cpu(), self.batch)
        return macs

    def __enter__(self) -> "DynamicMacMeter":
        self.records = []
        self._handles = [b.register_forward_hook(self._record) for b in self.blocks]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
