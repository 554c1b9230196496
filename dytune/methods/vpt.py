"""VPT-deep (the `vpt` method): learnable prompt tokens fed to every block and dropped after it; its settings, the
prompted block and the registration."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..backbones import backbone_for
from ..utils.settings import AT_LEAST_1, Settings, setting
from .base import Method, freeze_but_head, register_method


@dataclass
class VPTSettings(Settings):
    """VPT-deep: learnable prompt tokens in every block."""

    group: ClassVar[str] = "vpt"
    vpt_tokens: int = setting("VPT-deep prompt tokens per block", 10, AT_LEAST_1)


class PromptedBlock(nn.Module):
    """Insert `num_prompts` learnable tokens after the prefix tokens, run the block, drop them again.

    Args:
        block: The wrapped transformer block.
        dim: Token width.
        num_prompts: Prompt tokens of this block.
        num_prefix_tokens: Leading class/register tokens the prompts go after.
    """

    def __init__(self, block: nn.Module, dim: int, num_prompts: int, num_prefix_tokens: int) -> None:
        super().__init__()
        self.block = block
        self.num_prefix_tokens = num_prefix_tokens
        self.prompts = nn.Parameter(torch.empty(1, num_prompts, dim))
        bound = math.sqrt(6.0 / (dim + num_prompts))  # VPT's xavier-uniform range
        nn.init.uniform_(self.prompts, -bound, bound)

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        p = self.num_prefix_tokens
        prompts = self.prompts.expand(x.shape[0], -1, -1).to(x.dtype)
        x = self.block(torch.cat([x[:, :p], prompts, x[:, p:]], dim=1), **kwargs)
        return torch.cat([x[:, :p], x[:, p + prompts.shape[1]:]], dim=1)


def add_deep_prompts(model: nn.Module, num_prompts: int = 10) -> nn.Module:
    """Wrap every block of a timm ViT with its own prompts, in place."""
    if num_prompts < 1:
        raise ValueError(f"vpt_tokens={num_prompts!r}: expected an integer >= 1")
    backbone = backbone_for(model, "add_deep_prompts")
    if backbone.num_stages > 1:  # prompts join a sequence; a multi-stage family's blocks see a grid (Swin: windows)
        raise ValueError(f"add_deep_prompts: a {backbone.family} backbone has {backbone.num_stages} stages whose "
                         f"blocks attend within windows of a token grid, where prompt tokens have no place")
    for i, block in enumerate(backbone.blocks):
        layout = backbone.token_layout(i)
        backbone.blocks[i] = PromptedBlock(block, layout.dim, num_prompts, layout.num_prefix_tokens)
    return model


def _apply(model: nn.Module, settings: VPTSettings) -> nn.Module:
    return add_deep_prompts(freeze_but_head(model), settings.vpt_tokens)


register_method(Method("vpt", _apply, VPTSettings))
