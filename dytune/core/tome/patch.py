"""Put token merging into a timm VisionTransformer (a `dytune.backbones` family) or a dytune-converted one.

Each block merges `r` tokens between its attention and its MLP (ToMe's placement). A dytune block gets a `ToMeMerge`
as its `between_sub_blocks` hook (`dytune.core.modules.blocks.SubBlockHook`), so the dispatcher after it decides on the
merged tokens, as in DyT + ToMe (Table 5 of the DyT paper); a plain timm `Block` becomes a `ToMeBlock`, which calls
the same hook. With attention or layer dispatch the merge follows the dispatched attention (attention variants) or
the whole block (layer variant), and the similarity is measured on the hidden tokens instead of the attention keys,
which skipped tokens do not compute. Proportional attention is a forward pre-hook on the attention module.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ...backbones import backbone_for
from ..modules.blocks import DynamicBlock
from .merge import bipartite_soft_matching

__all__ = ["ToMeBlock", "ToMeMerge", "ToMeState", "apply_tome", "set_r", "supports_proportional_attention"]


class ToMeState:
    """Merging settings and the per-forward token sizes, shared by the blocks of one model.

    The sizes start afresh in the first block, so any entry point that runs the blocks from the first one
    (`model(x)`, `forward_features`, `forward_intermediates`) starts from unmerged tokens.

    Args:
        r: Tokens merged per block: one int for all blocks, or one per block.
        depth: Number of blocks.
        num_prefix_tokens: Leading tokens that are never merged.
        proportional_attention: Add log(size) to the attention logits so a merged token weighs as the tokens it
            replaced.
    """

    def __init__(self, r: Union[int, Sequence[int]], depth: int, num_prefix_tokens: int,
                 proportional_attention: bool) -> None:
        self.depth = depth
        self.num_prefix_tokens = num_prefix_tokens
        self.proportional_attention = proportional_attention
        self.size: Optional[torch.Tensor] = None
        self.set_r(r)

    def set_r(self, r: Union[int, Sequence[int]]) -> None:
        per_block = [int(r)] * self.depth if isinstance(r, int) else [int(v) for v in r]
        if len(per_block) != self.depth or any(v < 0 for v in per_block):
            raise ValueError(f"ToMe r={r!r}: expected an int >= 0 or {self.depth} of them, one per block")
        self.r: List[int] = per_block

    def reset(self) -> None:
        self.size = None

    def attention_bias(self, layer: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """Additive [B, 1, 1, N] attention bias log(size) for block `layer` (None in the first block, before any
        merge, or when disabled)."""
        if not self.proportional_attention or layer == 0 or self.size is None:
            return None
        return self.size.log().to(dtype).transpose(1, 2).unsqueeze(1)

    def merge(self, layer: int, x: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
        """Merge `r[layer]` tokens of x [B, N, C], matched on metric [B, N, D], and update the sizes."""
        if layer == 0:
            self.reset()
        matching = bipartite_soft_matching(metric, self.r[layer], self.num_prefix_tokens)
        if matching is None:
            return x
        x, self.size = matching.merge(x, self.size)
        return x


def _keys(attn: nn.Module, qkv: torch.Tensor) -> torch.Tensor:
    """Attention keys averaged over heads, [B, N, head_dim], from the output of a timm Attention's qkv layer."""
    batch, tokens, _ = qkv.shape
    return qkv.reshape(batch, tokens, 3, attn.num_heads, -1)[:, :, 1].mean(dim=2)


class ToMeMerge:
    """The merge of one block: a `SubBlockHook` that merges `state.r[layer]` tokens.

    Matches on the attention keys when `on_keys` (captured by `capture_qkv`, a forward hook on `attn.qkv`), else on
    the tokens themselves. Its methods are bound hooks, so a deep copy of the model merges with its own copy.

    Args:
        state: The model's shared `ToMeState`.
        layer: Index of the block.
        on_keys: Match on the attention keys (attention over every token) rather than on the tokens.
    """

    needs_patch_tokens = True  # it merges patch tokens: a prefix-only forward (`dytune.logits_only`) has none

    def __init__(self, state: ToMeState, layer: int, on_keys: bool) -> None:
        self.state, self.layer, self.on_keys = state, layer, on_keys
        self._qkv: Optional[torch.Tensor] = None

    def capture_qkv(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self._qkv = output

    def add_attention_bias(self, module: nn.Module, args: tuple, kwargs: Dict[str, Any]) -> Tuple[tuple, dict]:
        """Forward pre-hook of the attention module: proportional attention's log-size bias as its `attn_mask`."""
        bias = self.state.attention_bias(self.layer, args[0].dtype)
        if bias is not None and kwargs.get("attn_mask") is None:
            kwargs = {**kwargs, "attn_mask": bias}
        return args, kwargs

    def __call__(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        metric = x
        if self.on_keys:
            metric = _keys(block.attn, self._qkv)
            self._qkv = None  # nothing held between forwards
        return self.state.merge(self.layer, x, metric)


class ToMeBlock(Block):
    """timm `Block` that calls its `between_sub_blocks` hook (a `ToMeMerge`) between attention and MLP."""

    between_sub_blocks: ToMeMerge

    def forward(
            self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False,
    ) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise NotImplementedError("token merging takes no external attention mask")
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        x = self.between_sub_blocks(self, x)
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def _attends_all(block: nn.Module) -> bool:
    """Whether the block's attention sees every token (plain blocks, MLP dispatch)."""
    return not (isinstance(block, DynamicBlock) and block.dispatches_attention)


def supports_proportional_attention(model: nn.Module) -> bool:
    """Whether `apply_tome(model, proportional_attention=True)` is possible: every block attends over all tokens."""
    return all(_attends_all(block) for block in backbone_for(model, "token merging").blocks)


def apply_tome(model: nn.Module, r: Union[int, Sequence[int]] = 8, proportional_attention: bool = True) -> nn.Module:
    """Make every block of a timm ViT (converted by dytune or not) merge `r` tokens, in place.

    The weights and state-dict keys are unchanged; `set_r` changes r later, and r = 0 gives back the unmerged model.
    Prefix tokens are never merged. The pooled features of a `global_pool='avg'` model average the merged tokens
    without size weights, as ToMe's own timm patch does.

    Args:
        model: A backbone (`dytune.backbones`) with timm `Block`s, or a dytune-converted one (not under
            `dytune.logits_only`, whose prefix-only last block has no proportional attention).
        r: Tokens merged per block (an int, or one per block).
        proportional_attention: Weigh merged tokens by their size in attention (log-size bias on the logits). Only
            where attention sees every token: plain blocks and MLP dispatch (`supports_proportional_attention`).

    Returns:
        The same model.
    """
    backbone = backbone_for(model, "apply_tome")
    if backbone.token_merging_refusal:
        raise ValueError(f"token merging is not supported on {backbone.family} backbones: "
                         f"{backbone.token_merging_refusal}")
    if hasattr(model, "tome"):
        raise ValueError("token merging is already applied to this model; use dytune.core.tome.set_r to change r")
    if getattr(model, "_dytune_logits_only", ()):  # the hook handles `dytune.logits_only` keeps on the model
        raise ValueError("token merging cannot follow dytune.logits_only; call dytune.logits_only(model, "
                         "enabled=False), apply token merging, and leave the last block complete")
    blocks = backbone.blocks
    for i, block in enumerate(blocks):
        if isinstance(block, DynamicBlock):
            if block.between_sub_blocks is not None:
                raise ValueError(f"block {i} already has a between_sub_blocks hook")
            continue
        backbone.check_block(i)
        if type(block) is not Block:  # `ToMeBlock` replaces the forward of a timm Block, and only of one
            raise TypeError(f"token merging supports timm Block and dytune blocks, not {type(block).__name__} "
                            f"(block {i})")
    dispatched = sorted({b.variant for b in blocks if not _attends_all(b)})
    if proportional_attention and dispatched:
        raise ValueError(f"proportional attention needs attention over every token; dispatch variant(s) "
                         f"{dispatched} attend among kept tokens only; pass proportional_attention=False")
    prefixes = {backbone.token_layout(i).num_prefix_tokens for i in range(backbone.depth)}
    if len(prefixes) != 1:
        raise ValueError(f"token merging needs the same prefix tokens in every block, got counts {sorted(prefixes)}")
    state = ToMeState(r, backbone.depth, prefixes.pop(), proportional_attention)
    for i, block in enumerate(blocks):
        merge = ToMeMerge(state, i, on_keys=_attends_all(block))
        if not isinstance(block, DynamicBlock):
            block.__class__ = ToMeBlock
        block.between_sub_blocks = merge
        if merge.on_keys:
            block.attn.qkv.register_forward_hook(merge.capture_qkv)
        if proportional_attention:
            block.attn.register_forward_pre_hook(merge.add_attention_bias, with_kwargs=True)
    model.tome = state
    return model


def set_r(model: nn.Module, r: Union[int, Sequence[int]]) -> None:
    """Change the tokens merged per block of a model patched by `apply_tome`."""
    if not hasattr(model, "tome"):
        raise ValueError("this model has no token merging; call dytune.core.tome.apply_tome first")
    model.tome.set_r(r)
