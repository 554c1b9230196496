"""Semantic-segmentation metrics from a confusion matrix: mIoU, per-class IoU and accuracy, pixel accuracy.

The matrix is accumulated per process and summed over all ranks by `reduce()`, so the metric of a distributed
evaluation equals the single-process one; samples that a padding sampler repeats can be left out with `valid`.
Conventions are mmsegmentation's: a class counts in the means when it occurs in the ground truth or in the
prediction (IoU) or in the ground truth (accuracy); values are percentages.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["SegmentationMetric"]


class SegmentationMetric:
    """Confusion-matrix segmentation metric.

    Args:
        num_classes: K; labels are 0..K-1.
        ignore_index: Label of unlabelled pixels (never counted).
        device: Where the confusion matrix lives (the evaluation device, so that updates and reductions need no
            copy; CUDA for NCCL).

    `compute()` returns percentages: `miou`, `macc` (mean class accuracy), `acc` (overall pixel accuracy), the lists
    `iou` and `class_acc` (None for a class that does not count), `pixels` and `classes` (classes counted in mIoU).
    With no labelled pixel the three means are 0.
    """

    primary = "miou"
    greater_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 device: Union[str, torch.device] = "cpu") -> None:
        if num_classes < 1:
            raise ValueError(f"SegmentationMetric: num_classes={num_classes}; expected at least 1")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"SegmentationMetric: ignore_index={ignore_index} is a class label (0..{num_classes - 1})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # [K, K] int64, rows = ground truth, columns = prediction
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self._reduced: Optional[torch.Tensor] = None

    def better(self, value: float, than: float) -> bool:
        """Whether primary-metric value `value` beats `than`."""
        return value > than

    def reset(self) -> None:
        self.confusion.zero_()
        self._reduced = None

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None) -> None:
        """Add a batch.

        Args:
            prediction: Logits or scores [B, K, h, w] (resized bilinearly to the target's size when it differs,
                as mmseg does for labels kept at their original size, then arg-maxed) or labels [B, H, W].
            target: Labels [B, H, W] in 0..K-1 or `ignore_index`.
            valid: Optional [B] bools; samples marked False are not counted (e.g. repeats of a padding sampler).
        """
        if prediction.ndim == target.ndim + 1 == 4:
            if prediction.shape[1] != self.num_classes:
                raise ValueError(f"SegmentationMetric: logits have {prediction.shape[1]} classes, expected "
                                 f"{self.num_classes}")
            if prediction.shape[-2:] != target.shape[-2:]:
                prediction = F.interpolate(prediction.float(), size=tuple(target.shape[-2:]), mode="bilinear",
                                           align_corners=False)
            prediction = prediction.argmax(dim=1)
        if prediction.shape != target.shape or target.ndim != 3:
            raise ValueError(f"SegmentationMetric: prediction {tuple(prediction.shape)} and target "
                             f"{tuple(target.shape)}; expected logits [B, K, h, w] or labels [B, H, W] of the "
                             f"target's size, and target [B, H, W]")
        if prediction.is_floating_point() or target.is_floating_point():
            raise TypeError("SegmentationMetric: labels must be integer tensors; pass logits as [B, K, H, W]")
        device = self.confusion.device
        prediction, target = prediction.to(device).long(), target.to(device).long()
        labelled = target != self.ignore_index
        if valid is not None:
            valid = torch.as_tensor(valid, device=target.device).bool()
            if valid.shape != (target.shape[0],):
                raise ValueError(f"SegmentationMetric: valid has shape {tuple(valid.shape)}, expected "
                                 f"({target.shape[0]},) (one flag per sample)")
            labelled &= valid[:, None, None]
        gt, pred = target[labelled], prediction[labelled]
        bad = (gt < 0) | (gt >= self.num_classes)
        if bad.any():
            raise ValueError(f"SegmentationMetric: target labels {sorted(gt[bad].unique().tolist())[:10]} are outside "
                             f"0..{self.num_classes - 1} and not the ignore index {self.ignore_index}")
        bad = (pred < 0) | (pred >= self.num_classes)
        if bad.any():
            raise ValueError(f"SegmentationMetric: predicted labels {sorted(pred[bad].unique().tolist())[:10]} are "
                             f"outside 0..{self.num_classes - 1}")
        k = self.num_classes
        self.confusion += torch.bincount(gt * k + pred, minlength=k * k).view(k, k)
        self._reduced = None

    def reduce(self) -> "SegmentationMetric":
        """Sum the confusion matrix over all ranks (when torch.distributed is initialised); idempotent until the
        next `update`. Every rank must call it."""
        total = self.confusion.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        self._reduced = total
        return self

    def compute(self) -> Dict[str, Any]:
        """The metrics of the reduced matrix (after `reduce()`), else of this process's."""
        confusion = (self._reduced if self._reduced is not None else self.confusion).double().cpu()
        intersection = confusion.diag()
        gt = confusion.sum(dim=1)
        predicted = confusion.sum(dim=0)
        union = gt + predicted - intersection
        iou = _percent(intersection, union)
        class_acc = _percent(intersection, gt)
        pixels = int(gt.sum())
        return {
            "miou": _mean(iou), "macc": _mean(class_acc),
            "acc": 100.0 * float(intersection.sum()) / pixels if pixels else 0.0,
            "iou": iou, "class_acc": class_acc, "pixels": pixels, "classes": sum(v is not None for v in iou),
        }


def _percent(num: torch.Tensor, den: torch.Tensor) -> List[Optional[float]]:
    return [100.0 * float(n) / float(d) if d > 0 else None for n, d in zip(num, den)]


def _mean(values: List[Optional[float]]) -> float:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else 0.0
