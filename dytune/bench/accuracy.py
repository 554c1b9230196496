"""Accuracy against compute budget: one trained model, thresholds re-calibrated per keep rate, no retraining."""
from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Tuple

import torch
from torch import nn

from ..core.calibrate import budget_curve
from ..core.measure import InferenceMeter


@torch.no_grad()
def accuracy_vs_budget(
        model: nn.Module,
        batches: Iterable[Tuple[torch.Tensor, torch.Tensor]],
        keep_rates_to_try: Sequence[float],
        calibration_images: torch.Tensor,
        per_layer: bool = False,
) -> List[Dict[str, float]]:
    """Top-1 accuracy and MACs of a converted model at each keep rate, set with `dytune.calibrate`.

    The model's own thresholds are restored afterwards.

    Args:
        model: A converted (trained) model; it runs in eval mode (sparse execution).
        batches: (images, labels) pairs of the validation set; iterated once per keep rate, so pass a list or a
            re-iterable loader.
        keep_rates_to_try: Keep rates in [0, 1].
        calibration_images: Images the thresholds are calibrated on (e.g. a batch of training images).
        per_layer: See `sweep_keep_rates`.

    Returns:
        One dict per keep rate: the requested and the measured keep rate (mean over dispatchers and validation
        images), top-1 accuracy and GMACs per image.
    """
    device = next(model.parameters()).device

    def score() -> Dict[str, float]:
        meter = InferenceMeter(model, device=device)
        correct = 0
        for images, labels in batches:
            images, labels = images.to(device), labels.to(device)
            logits, _ = meter(images)
            correct += int((logits.argmax(dim=-1) == labels).sum())
        if meter.samples == 0:
            raise ValueError("accuracy_vs_budget: the validation batches are empty")
        return {"keep_rate": meter.keep_rate(), "accuracy": correct / meter.samples, "gmacs": meter.gmacs()}

    return budget_curve(model, calibration_images, keep_rates_to_try, score, per_layer)
