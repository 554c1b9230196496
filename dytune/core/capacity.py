"""Capacities of the dispatchers for fixed-capacity execution: how many tokens each keeps, per image.

`execution(model, "capacity")` makes each dispatcher keep exactly its top-k patch tokens per image (see
`dytune.core.modules.capacity`), with k = capacity x the patch tokens it sees. The capacities come from the trained model's
keep rates on calibration images, or from a budget (a mean keep rate, found as `dytune.calibrate` finds it), and
are set here.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Union

import torch
from torch import nn

from .calibrate import calibrate, dispatchers
from .convert import execution, keep_rates

__all__ = ["plan_capacity", "set_capacity", "capacities"]


def _forward(model: nn.Module, inputs: torch.Tensor) -> Any:
    return model(inputs)


@torch.no_grad()
def plan_capacity(
        model: nn.Module,
        inputs: torch.Tensor,
        keep_rate: Optional[float] = None,
        forward: Callable[[nn.Module, torch.Tensor], Any] = _forward,
) -> List[float]:
    """Capacities (fractions of the patch tokens) of every dispatcher, in forward order, measured on `inputs`.

    With `keep_rate=None` each capacity is the keep rate its dispatcher has on `inputs` with the model's own
    thresholds (threshold routing's mean keep rates, per layer). With a `keep_rate` the thresholds are calibrated
    globally to that mean keep rate first (`dytune.calibrate`, which keeps the trained model's choice of which layers
    compute) and restored afterwards. The model's train/eval state is restored too.

    Args:
        model: A converted model with dispatchers.
        inputs: Calibration batch (e.g. training samples without augmentation).
        keep_rate: Budget as a mean keep rate in [0, 1], or None for the trained thresholds.
        forward: How the model runs on `inputs` (e.g. a task's inference step).
    """
    gates = dispatchers(model)
    if not gates:
        raise ValueError(f"plan_capacity: {type(model).__name__} has no token dispatchers (e.g. an AdaptFormer model); "
                         f"there is no capacity to set")
    saved = [g.logit_threshold.clone() for g in gates]
    was_training = model.training
    try:
        if keep_rate is not None:
            calibrate(model, inputs, keep_rate)
        model.eval()
        with execution(model, "masked"):  # threshold routing, every token computed: the masks are exact
            forward(model, inputs)
            return keep_rates(model)
    finally:
        for gate, value in zip(gates, saved):
            gate.logit_threshold.copy_(value)
        model.train(was_training)


def set_capacity(model: nn.Module, capacity: Union[float, Sequence[float], None]) -> List[Optional[float]]:
    """Set the capacity of every dispatcher: one fraction for all, one per dispatcher (forward order, as
    `plan_capacity` returns them), or None to clear them.

    Args:
        model: A converted model with dispatchers.
        capacity: Fraction(s) of the patch tokens in [0, 1], or None.

    Returns:
        The capacities set, one per dispatcher.
    """
    gates = dispatchers(model)
    if not gates:
        raise ValueError(f"set_capacity: {type(model).__name__} has no token dispatchers (e.g. an AdaptFormer model)")
    if capacity is None or isinstance(capacity, (int, float)):
        values: List[Optional[float]] = [None if capacity is None else float(capacity)] * len(gates)
    else:
        values = [float(c) for c in capacity]
    if len(values) != len(gates) or not all(v is None or 0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"capacity={capacity!r}: expected a fraction in [0, 1], or {len(gates)} of them (one per "
                         f"dispatcher), or None")
    for gate, value in zip(gates, values):
        gate.capacity = value
    return values


def capacities(model: nn.Module) -> List[Optional[float]]:
    """The capacity of every dispatcher in forward order (None where unset)."""
    return [g.capacity for g in dispatchers(model)]
