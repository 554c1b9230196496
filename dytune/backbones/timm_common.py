"""What timm's vision transformers share (`TimmBackbone`: a timm `PatchEmbed` stem and its input checks,
`forward_intermediates` feature maps and pruning, the classifier reset, the timm releases their internals were checked
on), and what its single-stage ViT-like classes share besides (`TimmSingleStage`, for `VisionTransformer` and `Eva`:
one list of pre-norm blocks, `num_prefix_tokens` class and register tokens). A family subclasses one of them and adds
what differs (block class and parts, attention, pooling, checkpoint layout)."""
from __future__ import annotations

import warnings
from typing import Any, List, Sequence, Tuple

import timm
import torch
from torch import nn

from .base import Backbone, TokenLayout

__all__ = ["TESTED_TIMM", "TimmBackbone", "TimmSingleStage"]

TESTED_TIMM = ((1, 0, 20), (1, 1, 0))  # [lower, upper) bound of the timm releases the internals were checked on


def _timm_version() -> tuple:
    parts = []
    for piece in timm.__version__.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class TimmBackbone(Backbone):
    """The parts of the protocol that timm's vision transformers with a `PatchEmbed` stem answer alike (abstract: a
    family still says which models it accepts, where its blocks are, how its grid goes, and so on)."""

    def validate(self) -> None:
        lo, hi = TESTED_TIMM
        if not lo <= _timm_version() < hi:
            warnings.warn(f"dytune was tested with timm >= {'.'.join(map(str, lo))}, < {'.'.join(map(str, hi))}; "
                          f"found timm {timm.__version__}", stacklevel=3)
        for i in range(self.depth):
            self.check_block(i)

    @property
    def stem(self) -> nn.Module:
        return self.model.patch_embed

    @property
    def in_chans(self) -> int:
        return self.model.patch_embed.proj.in_channels

    @property
    def image_size(self) -> Tuple[int, int]:
        return tuple(self.model.patch_embed.img_size)

    def feature_maps(self, images: torch.Tensor, indices: Sequence[int]) -> List[torch.Tensor]:
        return self.model.forward_intermediates(images, indices=list(indices), output_fmt="NCHW",
                                                intermediates_only=True)

    def prune(self, indices: Sequence[int]) -> None:
        self.model.prune_intermediate_layers(list(indices), prune_norm=True, prune_head=True)

    def reset_classifier(self, num_classes: int) -> None:
        self.model.reset_classifier(num_classes)

    @property
    def dynamic_size(self) -> bool:
        return bool(getattr(self.model, "dynamic_img_size", False))

    def check_input(self, images: Any) -> None:
        embed = self.model.patch_embed
        channels = self.in_chans
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != channels:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f"dytune model input: expected images of shape [B, {channels}, H, W], got {shape}")
        height, width = images.shape[-2:]
        ph, pw = embed.patch_size
        if not self.dynamic_size and getattr(embed, "strict_img_size", True) and (
                (height, width) != tuple(embed.img_size)):
            raise ValueError(
                f"dytune model input: this model takes {embed.img_size[0]}x{embed.img_size[1]} images, got "
                f"{height}x{width}; create the timm model with img_size=({height}, {width}) or dynamic_img_size=True")
        if not getattr(embed, "dynamic_img_pad", False) and (height % ph or width % pw):
            raise ValueError(f"dytune model input: {height}x{width} is not a multiple of the {ph}x{pw} patch size")


class TimmSingleStage(TimmBackbone):
    """What timm's single-stage ViT-like classes answer alike besides: one list `model.blocks` on the patch grid,
    `num_prefix_tokens` leading tokens, feature maps per block."""

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.blocks

    def token_layout(self, index: int) -> TokenLayout:
        return TokenLayout(self.model.num_prefix_tokens, self.model.embed_dim, self.blocks[index].attn.num_heads, 0)

    def stride(self, stage: int = 0) -> Tuple[int, int]:
        if stage != 0:
            raise ValueError(f"stage={stage}: a timm {type(self.model).__name__} has one stage (0)")
        return tuple(self.model.patch_embed.patch_size)

    def grid(self, size: Tuple[int, int], stage: int = 0) -> Tuple[int, int]:
        self.stride(stage)
        return tuple(self.model.patch_embed.dynamic_feat_size(tuple(size)))

    @property
    def num_features(self) -> int:
        return self.model.embed_dim

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(images)
