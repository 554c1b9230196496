"""The DyT training objective, for any task: task loss + rate loss + the complete model's loss + distillation."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .convert import execution, keep_masks

__all__ = ["DyTLoss", "DynamicObjective", "TaskObjective", "distill_kl", "rate_loss"]

LossFn = Callable[[Any, Any], torch.Tensor]
DistillFn = Callable[[Any, Any, Any], torch.Tensor]


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(teacher || student) of the class distributions along `dim`, averaged over the batch ("batchmean")."""
    return F.kl_div(F.log_softmax(student.float(), dim=dim), F.log_softmax(teacher.float(), dim=dim),
                    log_target=True, reduction="batchmean")


def rate_loss(masks: List[torch.Tensor], target_rate: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(mean keep rate - r)^2 over all dispatched sub-blocks and patch tokens of the batch, and the per-sub-block
    keep rates (their mean is the keep rate). Frames folded into the batch are rows like images."""
    rates = torch.stack([m.float().mean() for m in masks])
    return (rates.mean() - target_rate) ** 2, rates


def _check_finite(total: torch.Tensor, parts: Dict[str, torch.Tensor], name: str) -> None:
    if not torch.isfinite(total):
        values = {k: float(v.detach()) for k, v in parts.items() if v.ndim == 0}
        raise FloatingPointError(f"{name} is not finite: {values}")


class DynamicObjective(nn.Module):
    """loss_weight * L(dynamic) + rate_weight * (keep rate - r)^2 + L(complete) + D(complete -> dynamic).

    The complete model is the same network with no token skipped; it is trained by its own task loss and serves
    as the teacher of the dynamic model, detached inside the distillation term. `distill=False,
    teacher_loss=False` is the paper's "without distillation" setting (one forward pass per step).

    Args:
        task_loss: (model output, targets) -> loss, e.g. a task's `loss`.
        distill_loss: (dynamic output, detached complete output, targets) -> loss, e.g. a task's `distill_loss`.
        target_rate: Target mean keep rate r in (0, 1].
        rate_weight: Weight alpha of the rate term (0 switches it off).
        distill: Add the distillation term.
        teacher_loss: Add the complete model's task loss; defaults to `distill`.
        loss_weight: Weight of the dynamic model's task loss.
        loss_name: The key of the task loss in the returned parts (the complete model's is `teacher_<name>`).
    """

    def __init__(
            self,
            task_loss: LossFn,
            distill_loss: DistillFn,
            target_rate: float = 0.5,
            rate_weight: float = 2.0,
            distill: bool = True,
            teacher_loss: Optional[bool] = None,
            loss_weight: float = 1.0,
            loss_name: str = "loss_task",
    ) -> None:
        super().__init__()
        if not 0.0 < target_rate <= 1.0:
            raise ValueError(f"{type(self).__name__} target_rate={target_rate!r}: expected a value in (0, 1]")
        if rate_weight < 0:
            raise ValueError(f"{type(self).__name__} rate_weight={rate_weight!r}: expected a value >= 0")
        self.task_loss, self.distill_loss = task_loss, distill_loss
        self.target_rate = target_rate
        self.rate_weight = rate_weight
        self.distill = distill
        self.teacher_loss = distill if teacher_loss is None else teacher_loss
        self.loss_weight = loss_weight
        self.loss_name = loss_name

    @staticmethod
    def _main(output: Any) -> Any:
        """The output the distillation compares: the first of (main, auxiliary, ...) training outputs."""
        return output[0] if isinstance(output, (tuple, list)) else output

    def forward(self, model: nn.Module, inputs: Any, targets: Any) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Run the dynamic forward (and the complete one when needed) and return (total, parts).

        `parts` holds detached scalars: the task loss, rate, teacher loss, distill (those switched on), keep_rate
        and loss, and `keep_rates`, the keep rate of each dispatched sub-block in order.
        """
        output = model(inputs)
        masks = keep_masks(model)
        parts: Dict[str, torch.Tensor] = {}
        task = self.task_loss(output, targets)
        total = self.loss_weight * task
        parts[self.loss_name] = task
        if masks:
            rate, rates = rate_loss(masks, self.target_rate)
            parts["keep_rate"] = rates.mean()
            parts["keep_rates"] = rates
            if self.rate_weight:
                total = total + self.rate_weight * rate
                parts["rate"] = rate
        if self.distill or self.teacher_loss:
            with execution(model, "complete"):
                teacher = model(inputs)
            if self.teacher_loss:
                parts[f"teacher_{self.loss_name}"] = self.task_loss(teacher, targets)
                total = total + parts[f"teacher_{self.loss_name}"]
            if self.distill:
                detached = self._main(teacher)
                detached = detached.detach() if torch.is_tensor(detached) else detached
                parts["distill"] = self.distill_loss(self._main(output), detached, targets)
                total = total + parts["distill"]
        _check_finite(total, parts, "the DyT objective")
        parts["loss"] = total
        return total, {k: v.detach() for k, v in parts.items()}


class DyTLoss(DynamicObjective):
    """The classification objective: CE + rate_weight * (keep rate - r)^2 + CE of the complete model +
    KL(complete || dynamic).

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
        self.label_smoothing = label_smoothing
        super().__init__(self._ce, lambda student, teacher, targets: distill_kl(student, teacher),
                         target_rate=target_rate, rate_weight=rate_weight, distill=distill, teacher_loss=teacher_ce,
                         loss_weight=ce_weight, loss_name="ce")

    def _ce(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    @property
    def teacher_ce(self) -> bool:
        return self.teacher_loss

    @property
    def ce_weight(self) -> float:
        return self.loss_weight


class TaskObjective(nn.Module):
    """The task loss alone, with the objectives' call signature: (model, inputs, targets) -> (loss, parts).

    Args:
        task_loss: (model output, targets) -> loss.
        loss_name: The key of the loss in the returned parts.
    """

    def __init__(self, task_loss: LossFn, loss_name: str = "loss_task") -> None:
        super().__init__()
        self.task_loss, self.loss_name = task_loss, loss_name

    def forward(self, model: nn.Module, inputs: Any, targets: Any) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        loss = self.task_loss(model(inputs), targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.loss_name} is not finite: {float(loss.detach())}")
        return loss, {self.loss_name: loss.detach(), "loss": loss.detach()}
