"""timm's `Eva` family: DINOv3 (`vit_*_dinov3`), EVA-02 (`eva02_*`), Perception Encoder (`vit_pe_*`), the
`vit_*_rope_*` models and EVA-01; one stage of pre-norm `EvaBlock`s with rotary position embeddings (per patch token,
passed to every block), SwiGLU / gated or plain MLPs, optional LayerScale (`gamma_1`, `gamma_2`), class and register
tokens."""
from __future__ import annotations

from typing import Any, Dict, Tuple, Type

import timm
import torch
from timm.layers import AttentionRope
from timm.models.eva import Eva, EvaAttention, EvaBlock
from torch import nn

from .base import AttentionCounter, BlockParts, BorrowedScale, register_backbone
from .timm_common import TimmSingleStage

__all__ = ["TimmEva"]


def _attention_macs(module: nn.Module, inputs: tuple, output: Any) -> int:
    batch, tokens, _ = inputs[0].shape
    macs = batch * 2 * tokens * tokens * module.num_heads * module.head_dim
    qkv = getattr(module, "qkv", None)
    if qkv is not None and getattr(module, "q_bias", None) is not None and not module.qkv_bias_separate:
        macs += batch * tokens * qkv.in_features * qkv.out_features  # F.linear on qkv.weight: no hook on qkv sees it
    return macs


@register_backbone
class TimmEva(TimmSingleStage):
    """A timm `Eva` with pre-norm `EvaBlock`s (not `use_post_norm=True`)."""

    family = "timm_eva"
    description = ("timm Eva (DINOv3, EVA-02, Perception Encoder, rotary ViTs; e.g. "
                   "timm.create_model('vit_base_patch16_dinov3'))")
    architecture_keys = ("embed_dim", "depth", "num_heads", "num_prefix_tokens", "rope")
    token_merging_refusal = ("the blocks apply rotary embeddings by patch position, which merged tokens no longer "
                             "have, and EvaAttention adds the q/v bias outside its qkv layer, where the merging "
                             "metric is read")

    @classmethod
    def accepts(cls, model: nn.Module) -> bool:
        return isinstance(model, Eva)

    @classmethod
    def attention_counters(cls) -> Dict[Type[nn.Module], AttentionCounter]:
        return {EvaAttention: _attention_macs, AttentionRope: _attention_macs}

    def check_block(self, index: int) -> None:
        block = self.blocks[index]
        if type(block) is not EvaBlock:  # EvaBlockPostNorm normalises after each branch, unlike a dytune block
            raise TypeError(f"block {index} is a {type(block).__name__}; dytune supports timm's pre-norm EvaBlock "
                            f"only (timm {timm.__version__}; models built with use_post_norm=True are not)")
        if type(block.attn) not in (EvaAttention, AttentionRope):
            raise TypeError(f"block {index}: attention {type(block.attn).__name__}; expected timm EvaAttention or "
                            f"AttentionRope")
        if block.attn.num_prefix_tokens != self.model.num_prefix_tokens:
            raise RuntimeError(f"block {index}: its attention skips the rotary embedding of "
                               f"{block.attn.num_prefix_tokens} prefix tokens, the model has "
                               f"{self.model.num_prefix_tokens}")

    def block_parts(self, index: int) -> BlockParts:
        self.check_block(index)
        block = self.blocks[index]
        ls1, ls2 = ((nn.Identity() if gamma is None else BorrowedScale(name, gamma))
                    for name, gamma in (("gamma_1", block.gamma_1), ("gamma_2", block.gamma_2)))
        return BlockParts(block.norm1, block.attn, ls1, block.drop_path1, block.norm2, block.mlp, ls2,
                          block.drop_path2)

    def position_dependent_attention(self, index: int) -> bool:
        return self.model.rope is not None

    def subset_attention(self, index: int) -> bool:
        return True  # the rope rows of the kept tokens are gathered with them (`tokens.gather_positions`)

    @property
    def pooling(self) -> str:
        return "map" if self.model.attn_pool is not None else self.model.global_pool

    def classifier_heads(self) -> Tuple[nn.Module, ...]:
        return (self.model.head,)

    def architecture(self) -> Dict[str, Any]:
        cfg = getattr(self.model, "pretrained_cfg", None) or {}
        return {
            "architecture": cfg.get("architecture"),
            "tag": cfg.get("tag"),
            "embed_dim": self.model.embed_dim,
            "depth": self.depth,
            "num_heads": self.blocks[0].attn.num_heads,
            "num_prefix_tokens": self.model.num_prefix_tokens,
            "patch_size": list(self.model.patch_embed.patch_size),
            "rope": None if self.model.rope is None else type(self.model.rope).__name__,
        }

    def adapt_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        from timm.models.eva import checkpoint_filter_fn

        return checkpoint_filter_fn(state, self.model)
