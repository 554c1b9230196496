"""LoRA on the fused qkv projection of the attention (the `lora` method): its settings, layer and registration."""
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
class LoRASettings(Settings):
    """LoRA on the attention's qkv projection."""

    group: ClassVar[str] = "lora"
    lora_rank: int = setting("LoRA rank on qkv", 8, AT_LEAST_1)
    lora_alpha: float = setting("LoRA scaling numerator (scale = alpha / rank)", 8.0)


class LoRALinear(nn.Module):
    """base(x) + (alpha / rank) * B(A(x)) with a frozen base Linear and B initialised to zero.

    Args:
        base: The Linear to adapt; it stays frozen.
        rank: Rank of the update.
        alpha: Scaling numerator.
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 8.0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank={rank!r}: expected an integer >= 1")
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Linear(base.in_features, rank, bias=False)
        self.lora_b = nn.Linear(rank, base.out_features, bias=False)
        self.scaling = alpha / rank
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_b(self.lora_a(x)) * self.scaling


def add_lora(model: nn.Module, rank: int = 8, alpha: float = 8.0) -> nn.Module:
    """Wrap every block's `attn.qkv` with LoRA, in place."""
    for block in backbone_for(model, "add_lora").blocks:
        block.attn.qkv = LoRALinear(block.attn.qkv, rank, alpha)
    return model


def _apply(model: nn.Module, settings: LoRASettings) -> nn.Module:
    return add_lora(freeze_but_head(model), settings.lora_rank, settings.lora_alpha)


register_method(Method("lora", _apply, LoRASettings))
