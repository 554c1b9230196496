"""Token dispatcher: decides per token whether it enters a sub-block."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


def gumbel_sigmoid(logits: torch.Tensor, tau: float, threshold: float) -> torch.Tensor:
    """Hard 0/1 sample of sigmoid((logits + g1 - g2) / tau) > threshold with a straight-through gradient.

    Args:
        logits: Keep logits of any shape.
        tau: Temperature; it only shapes the surrogate gradient when threshold is 0.5.
        threshold: Keep threshold on the noisy sigmoid.
    """
    logits = logits.float()  # the noise is sampled in fp32 even under autocast, where fp16 would lose its tails
    u = torch.rand((2,) + logits.shape, device=logits.device).clamp_(1e-9, 1.0 - 1e-9)
    gumbel = -torch.log(-torch.log(u))
    soft = torch.sigmoid((logits + gumbel[0] - gumbel[1]) / tau)
    hard = (soft > threshold).to(soft.dtype)
    return hard + (soft - soft.detach())  # grouped so that the forward value is exactly 0 or 1


class TokenDispatcher(nn.Module):
    """A linear gate (dim -> 1) that keeps or skips each token.

    Training draws a Gumbel-sigmoid sample with a straight-through gradient; inference keeps a token iff
    sigmoid(score) > threshold. The threshold is a buffer, stored as a logit so that calibrated values near 0 or 1
    survive half precision and checkpoints.

    Capacity execution ignores the threshold and keeps the `capacity` (a fraction of the patch tokens, set by
    `dytune.set_capacity`; a plain attribute, not saved with the weights) highest-scoring tokens of every image.

    Args:
        dim: Token width.
        tau: Gumbel-sigmoid temperature.
        threshold: Keep threshold on the keep probability, in (0, 1).
    """

    def __init__(self, dim: int, tau: float = 5.0, threshold: float = 0.5) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 1)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        self.tau = tau
        self.capacity: Optional[float] = None
        self.register_buffer("logit_threshold", torch.tensor(math.log(threshold / (1.0 - threshold))))

    @property
    def threshold(self) -> float:
        return float(torch.sigmoid(self.logit_threshold.float()))

    def set_threshold(self, threshold: float) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold={threshold!r}: expected a value in (0, 1)")
        self.logit_threshold.fill_(math.log(threshold / (1.0 - threshold)))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Keep logits, shape x.shape[:-1]."""
        return self.proj(x).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Keep mask of shape x.shape[:-1]: float 0/1, differentiable (straight-through) in training."""
        logits = self.scores(x)
        if self.training:
            return gumbel_sigmoid(logits, self.tau, self.threshold)
        return (logits.float() > self.logit_threshold.float()).to(x.dtype)

    def extra_repr(self) -> str:
        capacity = "" if self.capacity is None else f", capacity={self.capacity:.4g}"
        return f"tau={self.tau}, threshold={self.threshold:.4g}{capacity}"
