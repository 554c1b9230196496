"""timm's `VisionTransformer` family: ViT, DeiT (distilled), CLIP-style pre-norm, SigLIP, DINOv2 with registers,
LayerScale models, `dynamic_img_size`; one stage of pre-norm `Block`s after a learned absolute position embedding."""
from __future__ import annotations

import inspect
from typing import Any, Dict, Tuple, Type

import timm
import torch
from timm.layers import Attention, AttentionPoolLatent
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from .base import AttentionCounter, BlockParts, register_backbone
from .timm_common import TESTED_TIMM, TimmSingleStage

__all__ = ["TimmViT"]

def _self_attention_macs(module: nn.Module, inputs: tuple, output: Any) -> int:
    batch, tokens, _ = inputs[0].shape
    return batch * 2 * tokens * tokens * (module.qkv.out_features // 3)


def _latent_attention_macs(module: nn.Module, inputs: tuple, output: Any) -> int:
    batch, tokens, _ = inputs[0].shape
    return batch * 2 * module.latent.shape[1] * tokens * module.kv.out_features // 2


@register_backbone
class TimmViT(TimmSingleStage):
    """A timm `VisionTransformer` (any model of `timm.models.vision_transformer`) with pre-norm `Block`s."""

    family = "timm_vit"
    description = ("timm VisionTransformer (ViT, DeiT, CLIP-style, SigLIP, DINOv2 with registers; e.g. "
                   "timm.create_model('vit_base_patch16_224'))")
    architecture_keys = ("embed_dim", "depth", "num_heads", "num_prefix_tokens")

    @classmethod
    def accepts(cls, model: nn.Module) -> bool:
        return isinstance(model, VisionTransformer)

    @classmethod
    def attention_counters(cls) -> Dict[Type[nn.Module], AttentionCounter]:
        return {Attention: _self_attention_macs, AttentionPoolLatent: _latent_attention_macs}

    def check_block(self, index: int) -> None:
        block = self.blocks[index]
        if type(block) is not Block:  # a Block subclass has its own forward, which the dytune block would not run
            raise TypeError(f"block {index} is a {type(block).__name__}; dytune supports timm's pre-norm "
                            f"vision_transformer.Block only (timm {timm.__version__})")
        missing = [n for n in BlockParts.required() if not hasattr(block, n)]
        if missing or "attn_mask" not in inspect.signature(block.attn.forward).parameters:
            lo, hi = TESTED_TIMM
            raise RuntimeError(
                f"timm {timm.__version__} lays out ViT blocks differently from what dytune supports "
                f"(missing {missing or 'Attention.forward(attn_mask=...)'}); install timm>="
                f"{'.'.join(map(str, lo))},<{'.'.join(map(str, hi))}")

    def block_parts(self, index: int) -> BlockParts:
        self.check_block(index)
        block = self.blocks[index]
        return BlockParts.of(block)

    def position_dependent_attention(self, index: int) -> bool:
        return False

    @property
    def pooling(self) -> str:
        if getattr(self.model, "attn_pool", None) is not None:
            return "map"
        return self.model.global_pool

    def classifier_heads(self) -> Tuple[nn.Module, ...]:
        heads = self.model.get_classifier()
        return heads if isinstance(heads, tuple) else (heads,)

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
        }

    def adapt_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = {k: v for k, v in state.items() if not k.startswith("pre_logits.")}  # the in21k representation layer
        return checkpoint_filter_fn(state, self.model)

    def load_native(self, path: str) -> None:
        from timm.models.vision_transformer import _load_weights

        if not path.lower().endswith(".npz"):
            super().load_native(path)
        _load_weights(self.model, path)
