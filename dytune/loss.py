"""The DyT training objective."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .convert import execution, keep_masks


def rate_loss(masks: List[torch.Tensor], target_rate: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(mean keep rate - r)^2 over all dispatched sub-blocks and patch tokens of the batch, and the per-sub-block
    keep rates (their mean is the keep rate)."""
    rates = torch.stack([m.float().mean() for m in masks])
    return (rates.mean() - target_rate) ** 2, rates


class DyTLoss(nn.Module):
    """CE + rate_weight * (keep rate - r)^2 + CE of the complete model + KL(complete || dynamic).

    The complete model is the same network with no token skipped; it is trained by its own CE and serves as the
    teacher of the dynamic model, detached inside the KL. `distill=False, teacher_ce=False` is the paper's
    "without distillation" setting (one forward pass per step).

    Args:
        target_rate: Target mean keep rate r in (0, 1].
        rate_weight: Weight alpha of the rate term (0 switches it off).
        distill: Add KL(complete || dynamic).
        teacher_ce: Add the CE of the complete model; defaults to `distill`.
        ce_weight: Weight of the dynamic model's CE.
        label_smoothing: Label smoothing of both CE terms.
    """

    def __init__(
            self,
            target_rate: float = 0.5,
            rate_weight: float = 2.0,
            distill: bool = True,
            teacher_ce: Optional[bool] = None,
            ce_weight: float = 1.0,
            label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 < target_rate <= 1.0:
            raise ValueError(f"DyTLoss target_rate={target_rate!r}: expected a value in (0, 1]")
        if rate_weight < 0:
            raise ValueError(f"DyTLoss rate_weight={rate_weight!r}: expected a value >= 0")
        self.target_rate = target_rate
        self.rate_weight = rate_weight
        self.distill = distill
        self.teacher_ce = distill if teacher_ce is None else teacher_ce
        self.ce_weight = ce_weight
        self.label_smoothing = label_smoothing

    def forward(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Run the dynamic forward (and the complete one when needed) and return (total, parts).

        `parts` holds detached scalars: ce, rate, teacher_ce, distill (those switched on), keep_rate and loss, and
        `keep_rates`, the keep rate of each dispatched sub-block in order.
        """
        logits = model(images)
        masks = keep_masks(model)
        parts: Dict[str, torch.Tensor] = {}
        ce = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        total = self.ce_weight * ce
        parts["ce"] = ce
        if masks:
            rate, rates = rate_loss(masks, self.target_rate)
            parts["keep_rate"] = rates.mean()
            parts["keep_rates"] = rates
            if self.rate_weight:
                total = total + self.rate_weight * rate
                parts["rate"] = rate
        if self.distill or self.teacher_ce:
            with execution(model, "complete"):
                teacher = model(images)
            if self.teacher_ce:
                parts["teacher_ce"] = F.cross_entropy(teacher, targets, label_smoothing=self.label_smoothing)
                total = total + parts["teacher_ce"]
            if self.distill:
                parts["distill"] = F.kl_div(
                    F.log_softmax(logits.float(), dim=-1), F.log_softmax(teacher.detach().float(), dim=-1),
                    log_target=True, reduction="batchmean")
                total = total + parts["distill"]
        if not torch.isfinite(total):
            values = {k: float(v.detach()) for k, v in parts.items() if v.ndim == 0}
            raise FloatingPointError(f"DyTLoss is not finite: {values}")
        parts["loss"] = total
        return total, {k: v.detach() for k, v in parts.items()}
