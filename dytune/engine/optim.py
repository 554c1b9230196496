"""Optimisation: AdamW parameter groups and the one learning-rate schedule (linear warm-up, half-cosine or poly decay)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Set

from torch import nn

__all__ = ["LrSchedule", "param_groups", "lr_at"]

NO_DECAY_NAMES = ("cls_token", "reg_token", "dist_token", "pos_embed", "prompts")
SCHEDULES = ("cosine", "poly")


def _declared_no_decay(model: nn.Module) -> Set[str]:
    """Full names of the parameters modules exclude with timm's `no_weight_decay()` (names relative to them)."""
    names: Set[str] = set()
    for prefix, module in model.named_modules():
        declared = getattr(module, "no_weight_decay", None)
        if callable(declared):
            names.update(f"{prefix}.{n}" if prefix else n for n in declared())
    return names


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms, tokens and position embeddings (all <= 1-D, named so, or
    declared by a module's `no_weight_decay()`, timm's convention, e.g. a pooling query)."""
    decay, no_decay = [], []
    declared = _declared_no_decay(model)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(NO_DECAY_NAMES) or name in declared
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, warmup: int, base: float, final: float, schedule: str = "cosine",
          power: float = 1.0) -> float:
    """Learning rate of optimiser step `step` (0-based) of `total`, per iteration: linear warm-up over `warmup` steps
    reaching `base` at the last of them (the first step trains at base / warmup, not 0), then a decay from `base` to
    `final`: half-cosine (`schedule="cosine"`) or mmseg's poly, `(base - final) * (1 - progress) ** power + final`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"lr schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return final + (base - final) * (1.0 - progress) ** power


@dataclass(frozen=True)
class LrSchedule:
    """`lr_at` with its settings bound: `schedule(step)` is the learning rate of optimiser step `step` (0-based).

    Args:
        total: Optimiser steps of the whole run.
        warmup: Steps of the linear warm-up.
        base: Learning rate at the end of the warm-up.
        final: Learning rate at the end of the decay.
        kind: cosine or poly.
        power: Exponent of the poly decay.
    """

    total: int
    warmup: int
    base: float
    final: float
    kind: str = "cosine"
    power: float = 1.0

    def __post_init__(self) -> None:
        lr_at(self.warmup, self.total, self.warmup, self.base, self.final, self.kind, self.power)  # a bad kind fails

    def __call__(self, step: int) -> float:
        return lr_at(step, self.total, self.warmup, self.base, self.final, self.kind, self.power)
