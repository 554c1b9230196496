"""Metrics shared by tasks: per-class accuracy counts for classification (images and clips)."""
from __future__ import annotations

from typing import Any, Dict, Sequence

import torch

from ...utils.distributed import all_reduce_sum
from ..base import Metric

__all__ = ["ClassificationMetric"]


class ClassificationMetric(Metric):
    """Top-k accuracy and mean per-class accuracy from per-class counts.

    Classes absent from the evaluation set do not count in the per-class mean.

    Args:
        num_classes: Number of classes of the model's output.
        primary: The number that picks the best checkpoint ("acc" or "mean_per_class_acc").
        topk: Extra top-k accuracies to report as `top{k}_acc` (top-1 is always `acc`).
        device: Where the counts live (the evaluation device, so that reductions need no copy).
    """

    def __init__(self, num_classes: int, primary: str = "acc", topk: Sequence[int] = (),
                 device: torch.device = torch.device("cpu")) -> None:
        if primary not in ("acc", "mean_per_class_acc"):
            raise ValueError(f"primary={primary!r}: expected 'acc' or 'mean_per_class_acc'")
        self.num_classes, self.primary, self.topk = num_classes, primary, tuple(k for k in topk if k > 1)
        self.per_class = torch.zeros(2, num_classes, dtype=torch.float64, device=device)  # correct, total
        self.topk_correct = torch.zeros(len(self.topk), dtype=torch.float64, device=device)

    def update(self, output: torch.Tensor, targets: torch.Tensor) -> None:
        pred = output.argmax(dim=-1)
        self.per_class[1].index_add_(0, targets, torch.ones_like(targets, dtype=torch.float64))
        self.per_class[0].index_add_(0, targets, (pred == targets).double())
        for i, k in enumerate(self.topk):
            top = output.topk(min(k, output.shape[-1]), dim=-1).indices
            self.topk_correct[i] += (top == targets[:, None]).any(dim=-1).double().sum()

    def reduce(self) -> None:
        all_reduce_sum(self.per_class)
        all_reduce_sum(self.topk_correct)

    def compute(self) -> Dict[str, Any]:
        seen = self.per_class[1].sum().item()
        present = self.per_class[1] > 0
        out = {
            "acc": 100.0 * self.per_class[0].sum().item() / max(1.0, seen),
            "mean_per_class_acc": 100.0 * (self.per_class[0][present] / self.per_class[1][present]).mean().item()
            if bool(present.any()) else 0.0,
        }
        for i, k in enumerate(self.topk):
            out[f"top{k}_acc"] = 100.0 * self.topk_correct[i].item() / max(1.0, seen)
        return out
