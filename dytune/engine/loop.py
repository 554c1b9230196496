"""The optimisation step every training loop of dytune runs: `dytune train` (any task and method) and `dytune pretrain`."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from ..utils.runtime import autocast
from .optim import LrSchedule

__all__ = ["OptimizerStep"]

Forward = Callable[[], Tuple[torch.Tensor, Dict[str, Any]]]


class OptimizerStep:
    """One batch of training: the scheduled learning rate, the forward under autocast, the scaled backward and, at
    the end of each accumulation group, gradient clipping and the optimiser step.

    Args:
        optimizer: The optimiser; every group gets the schedule's learning rate.
        schedule: Learning rate per optimiser step.
        clip_params: The parameters whose gradient norm is clipped.
        clip_grad: Largest gradient norm (None: no clipping).
        scaler: The fp16 gradient scaler (None: a disabled one, a no-op).
        device: Where the forward runs (for autocast).
        precision: fp32, bf16 or fp16.
        accum_steps: Batches whose gradients one optimiser step sums.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LrSchedule, clip_params: Iterable[nn.Parameter],
                 clip_grad: Optional[float] = None, scaler: Optional[torch.amp.GradScaler] = None,
                 device: torch.device = torch.device("cpu"), precision: str = "fp32", accum_steps: int = 1) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        self.clip_params = list(clip_params)
        self.clip_grad = clip_grad
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler("cuda", enabled=False)
        self.device = device
        self.precision = precision
        self.accum_steps = accum_steps
        self.lr = schedule(0)

    def __call__(self, step: int, forward: Forward, apply: bool = True) -> Tuple[torch.Tensor, Dict[str, Any]]:
        """Train on one batch as optimiser step `step`; returns what `forward` returned.

        Args:
            step: The optimiser step this batch belongs to (sets the learning rate).
            forward: Computes (loss, parts) on the batch.
            apply: Whether this batch ends its accumulation group (the optimiser steps after it).

        Raises:
            FloatingPointError: The loss is not finite (nothing is applied; the caller says where the last good
                state is).
        """
        self.lr = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        with autocast(self.device, self.precision):
            loss, parts = forward()
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(f"loss is {loss.item()}")
        self.scaler.scale(loss / self.accum_steps).backward()
        if apply:
            if self.clip_grad:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.clip_params, self.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        return loss, parts
