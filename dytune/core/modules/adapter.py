"""Bottleneck adapters: a plain one (AdaptFormer style) and a per-image mixture of experts."""
from __future__ import annotations

import math

import torch
from torch import nn


class Adapter(nn.Module):
    """down -> ReLU -> dropout -> up -> x scale, starting as the zero function.

    Args:
        dim: Token width.
        bottleneck: Hidden width.
        scale: Fixed output factor.
        dropout: Dropout on the hidden activation.
    """

    def __init__(self, dim: int, bottleneck: int, scale: float = 1.0, dropout: float = 0.1) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = scale
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.drop(self.act(self.down(x)))) * self.scale

    def macs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Multiply-accumulates for `tokens` tokens per image."""
        return tokens * (2 * self.down.in_features * self.down.out_features)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class MoEAdapter(nn.Module):
    """Mixture-of-experts adapter (DyT-dagger): one merged adapter per image.

    A router on the mean of the image's tokens gives softmax weights over the experts; the experts' weights are
    averaged with them, so each image runs a single adapter of the usual cost.

    Args:
        dim: Token width.
        bottleneck: Hidden width of every expert.
        experts: Number of experts.
        scale: Fixed output factor.
        dropout: Dropout on the hidden activation.
    """

    def __init__(self, dim: int, bottleneck: int, experts: int, scale: float = 1.0, dropout: float = 0.1) -> None:
        super().__init__()
        self.router = nn.Linear(dim, experts)
        self.down_weight = nn.Parameter(torch.empty(experts, dim, bottleneck))
        self.down_bias = nn.Parameter(torch.zeros(experts, bottleneck))
        self.up_weight = nn.Parameter(torch.zeros(experts, bottleneck, dim))
        self.up_bias = nn.Parameter(torch.zeros(experts, dim))
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.scale = scale
        nn.init.zeros_(self.router.weight)
        nn.init.zeros_(self.router.bias)
        bound = 1.0 / math.sqrt(dim)  # nn.Linear's default (kaiming_uniform, a=sqrt(5)) for each expert
        nn.init.uniform_(self.down_weight, -bound, bound)

    @property
    def num_experts(self) -> int:
        return self.down_weight.shape[0]

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image expert weights, shape [B, experts]."""
        return self.router(x.mean(dim=1)).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.routing(x).to(x.dtype)
        down = torch.einsum("be,ecd->bcd", alpha, self.down_weight.to(x.dtype))
        up = torch.einsum("be,edc->bdc", alpha, self.up_weight.to(x.dtype))
        h = torch.baddbmm((alpha @ self.down_bias.to(x.dtype)).unsqueeze(1), x, down)
        h = self.drop(self.act(h))
        return torch.baddbmm((alpha @ self.up_bias.to(x.dtype)).unsqueeze(1), h, up) * self.scale

    def macs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Multiply-accumulates for `tokens` tokens per image: router, weight merge and the merged adapter."""
        experts, dim, bottleneck = self.down_weight.shape
        per_token = 2 * dim * bottleneck
        return tokens * per_token + dim * experts + experts * (per_token + bottleneck + dim)

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, scale={self.scale}"


def build_adapter(dim: int, bottleneck: int, experts: int, scale: float, dropout: float) -> nn.Module:
    """A plain adapter for experts == 1, otherwise a mixture of experts."""
    if experts == 1:
        return Adapter(dim, bottleneck, scale=scale, dropout=dropout)
    return MoEAdapter(dim, bottleneck, experts, scale=scale, dropout=dropout)
