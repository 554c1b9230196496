"""Put token merging into a timm VisionTransformer or a dytune-converted one.

Each block merges `r` tokens between its attention and its MLP (ToMe's placement). In a dytune model the dispatcher
then decides on the merged tokens, as in DyT + ToMe (Table 5 of the DyT paper). With attention or layer dispatch the
merge follows the dispatched attention (attention variants) or the whole block (layer variant), and the similarity is
measured on the hidden tokens instead of the attention keys, which skipped tokens do not compute.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Type, Union

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from ..modules.blocks import DynamicBlock
from .merge import bipartite_soft_matching

__all__ = ["ToMeState", "apply_tome", "set_r"]


class ToMeState:
    """Merging settings and the per-forward token sizes, shared by the blocks of one model.

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

    def attention_bias(self, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """Additive [B, 1, 1, N] attention bias log(size) (None before the first merge or when disabled)."""
        if not self.proportional_attention or self.size is None:
            return None
        return self.size.log().to(dtype).transpose(1, 2).unsqueeze(1)

    def merge(self, layer: int, x: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
        """Merge `r[layer]` tokens of x [B, N, C], matched on metric [B, N, D], and update the sizes."""
        matching = bipartite_soft_matching(metric, self.r[layer], self.num_prefix_tokens)
        if matching is None:
            return x
        x, self.size = matching.merge(x, self.size)
        return x


def _keys(attn: nn.Module, qkv: torch.Tensor) -> torch.Tensor:
    """Attention keys averaged over heads, [B, N, head_dim], from the output of a timm Attention's qkv layer."""
    batch, tokens, _ = qkv.shape
    return qkv.reshape(batch, tokens, 3, attn.num_heads, -1)[:, :, 1].mean(dim=2)


class _ToMeMixin:
    """Shared by the merging block classes: the model's `ToMeState`, the block index, and the keys of the last
    attention (captured by a hook on `attn.qkv`)."""

    _tome: ToMeState
    _tome_layer: int
    _tome_qkv: Optional[torch.Tensor] = None

    def _merge_on_keys(self, x: torch.Tensor) -> torch.Tensor:
        metric = _keys(self.attn, self._tome_qkv)
        self._tome_qkv = None
        return self._tome.merge(self._tome_layer, x, metric)

    def _merge_on_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self._tome.merge(self._tome_layer, x, x)


class ToMeBlock(_ToMeMixin, Block):
    """timm `Block` that merges tokens between attention and MLP, with optional proportional attention."""

    def forward(
            self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False,
    ) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise NotImplementedError("token merging takes no external attention mask")
        bias = self._tome.attention_bias(x.dtype)
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=bias)))
        x = self._merge_on_keys(x)
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class _ToMeDynamicBlock(_ToMeMixin):
    """Merging for dytune blocks; `_forward` per dispatch variant."""

    variant: str

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "mlp":
            x = x + self._attn_out(x, self._tome.attention_bias(x.dtype))
            x = self._merge_on_keys(x)
            self._mlp_input_tokens = x.shape[1]
            return self._adapter_and_mlp(x)
        if self.variant == "layer":
            return self._merge_on_tokens(super()._forward(x))
        x = self._add_attention(x + self.attn_adapter(x), x, self._keep("attn", x))
        x = self._merge_on_tokens(x)
        self._mlp_input_tokens = x.shape[1]
        if self.variant == "attn":
            return x + self._mlp_out(x)
        return self._adapter_and_mlp(x)


_CLASSES: Dict[type, type] = {}


def _tome_class(cls: Type[nn.Module]) -> type:
    if cls not in _CLASSES:
        if issubclass(cls, DynamicBlock):
            _CLASSES[cls] = type(f"ToMe{cls.__name__}", (_ToMeDynamicBlock, cls), {})
        elif cls is Block:
            _CLASSES[cls] = ToMeBlock
        else:
            raise TypeError(f"token merging supports timm Block and dytune blocks, not {cls.__name__}")
    return _CLASSES[cls]


def _store_qkv(block: nn.Module):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        block._tome_qkv = output
    return hook


def apply_tome(model: nn.Module, r: Union[int, Sequence[int]] = 8, proportional_attention: bool = True) -> nn.Module:
    """Make every block of a timm ViT (converted by dytune or not) merge `r` tokens, in place.

    The weights and state-dict keys are unchanged; `set_r` changes r later, and r = 0 gives back the unmerged model.
    Prefix tokens are never merged. The pooled features of a `global_pool='avg'` model average the merged tokens
    without size weights, as ToMe's own timm patch does.

    Args:
        model: A timm VisionTransformer with timm `Block`s, or a dytune-converted one.
        r: Tokens merged per block (an int, or one per block).
        proportional_attention: Weigh merged tokens by their size in attention (log-size bias on the logits). Only
            where attention sees every token: plain blocks and MLP dispatch.

    Returns:
        The same model.
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"apply_tome expects a timm VisionTransformer, got {type(model).__name__}")
    if hasattr(model, "tome"):
        raise ValueError("token merging is already applied to this model; use dytune.tome.set_r to change r")
    variants = {getattr(b, "variant", "") for b in model.blocks if isinstance(b, DynamicBlock)}
    if proportional_attention and variants - {"mlp"}:
        raise ValueError(f"proportional attention needs attention over every token; dispatch variant(s) "
                         f"{sorted(variants - {'mlp'})} attend among kept tokens only; "
                         f"pass proportional_attention=False")
    state = ToMeState(r, len(model.blocks), model.num_prefix_tokens, proportional_attention)
    for i, block in enumerate(model.blocks):
        block.__class__ = _tome_class(type(block))
        block._tome, block._tome_layer = state, i
        if not isinstance(block, DynamicBlock) or block.variant == "mlp":  # the blocks that match on attention keys
            block.attn.qkv.register_forward_hook(_store_qkv(block))
    model.tome = state
    model.register_forward_pre_hook(lambda module, args: state.reset())
    return model


def set_r(model: nn.Module, r: Union[int, Sequence[int]]) -> None:
    """Change the tokens merged per block of a model patched by `apply_tome`."""
    if not hasattr(model, "tome"):
        raise ValueError("this model has no token merging; call dytune.tome.apply_tome first")
    model.tome.set_r(r)
