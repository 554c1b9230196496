"""Set dispatcher thresholds for a requested keep rate: the inference-time compute knob."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from .convert import dynamic_blocks, execution, keep_rates
from .modules.dispatcher import TokenDispatcher

__all__ = ["calibrate", "dispatchers", "sweep_keep_rates", "budget_curve"]


def dispatchers(model: nn.Module) -> List[TokenDispatcher]:
    """Every dispatcher of a converted model, in forward order."""
    return [d for block in dynamic_blocks(model) for d in block.dispatchers().values()]


def _end_point(rate: float) -> Optional[float]:
    """The threshold of rate 1 (every token, on any image) or 0 (none); None for rates in between."""
    if rate >= 1.0:
        return -math.inf
    if rate <= 0.0:
        return math.inf
    return None


def _logit_for_rate(logits: torch.Tensor, rate: float) -> float:
    """A logit threshold that keeps round(rate * n) of `logits` (strictly greater than it)."""
    end = _end_point(rate)
    if end is not None:
        return end
    values = logits.float().flatten().sort(descending=True).values
    kept = round(rate * values.numel())
    if kept >= values.numel():
        return float(values[-1]) - 1.0
    if kept == 0:
        return float(values[0]) + 1.0
    return float(values[kept - 1] + values[kept]) / 2.0


@torch.no_grad()
def calibrate(
        model: nn.Module,
        images: torch.Tensor,
        keep_rate: Union[float, Sequence[float]] = 0.5,
        per_layer: bool = False,
        steps: int = 30,
) -> List[float]:
    """Set the dispatcher thresholds so that the keep rate on `images` is the one asked for.

    Per layer, each dispatched sub-block keeps exactly `keep_rate` of the patch tokens of `images` (or its
    own entry when a sequence is given); thresholds are set in forward order in one pass, since each layer's input
    depends on the decisions before it. Globally (`per_layer=False`, the default), one threshold shared by all
    dispatchers is found by bisection, so that the mean keep rate over layers is `keep_rate` while layers keep what
    they score highest: this keeps a trained model's choice of which layers compute (equal per-layer rates cost
    trained mini-VTAB models 9.6 points at keep rate 0.5, docs/minivtab.md).

    Args:
        model: A converted model; it is left in the train/eval state it was in.
        images: Calibration batch.
        keep_rate: Target keep rate in [0, 1], or one per dispatched sub-block (per_layer only).
        steps: Bisection steps of the global search.

    Returns:
        The keep rate of each dispatched sub-block on `images` after calibration.
    """
    gates = dispatchers(model)
    if not gates:
        raise ValueError(f"calibrate: {type(model).__name__} has dytune blocks but no token dispatchers (e.g. an "
                         f"AdaptFormer model, or DyTConfig(layers=())); there is no keep rate to set")
    rates = list(keep_rate) if isinstance(keep_rate, (list, tuple)) else [float(keep_rate)] * len(gates)
    if len(rates) != len(gates) or not all(0.0 <= r <= 1.0 for r in rates):
        raise ValueError(f"keep_rate={keep_rate!r}: expected a rate in [0, 1] or {len(gates)} of them, one per "
                         f"dispatched sub-block")
    if not per_layer and isinstance(keep_rate, (list, tuple)):
        raise ValueError("a global calibration takes a single keep_rate")
    was_training = model.training
    model.eval()
    try:
        with execution(model, "masked"):
            if per_layer:
                handles = []
                for gate, rate in zip(gates, rates):
                    def hook(module: TokenDispatcher, args: tuple, rate: float = rate) -> None:
                        module.logit_threshold.fill_(_logit_for_rate(module.scores(args[0]), rate))
                    handles.append(gate.register_forward_pre_hook(hook))
                try:
                    model(images)
                finally:
                    for h in handles:
                        h.remove()
            elif _end_point(rates[0]) is not None:
                for gate in gates:
                    gate.logit_threshold.fill_(_end_point(rates[0]))
            else:  # trained dispatchers reach logits far beyond +-30 (a layer that learned to skip everything)
                low, high = -1e4, 1e4
                for _ in range(steps):
                    mid = (low + high) / 2.0
                    for gate in gates:
                        gate.logit_threshold.fill_(mid)
                    model(images)
                    mean = sum(keep_rates(model)) / len(gates)
                    low, high = (mid, high) if mean > rates[0] else (low, mid)
                for gate in gates:
                    gate.logit_threshold.fill_((low + high) / 2.0)
            model(images)
            return keep_rates(model)
    finally:
        model.train(was_training)


def sweep_keep_rates(
        model: nn.Module,
        calibration_images: torch.Tensor,
        keep_rates_to_try: Sequence[float],
        score: Callable[[float], Dict[str, Any]],
        per_layer: bool = False,
) -> List[Dict[str, Any]]:
    """score(rate) of the model calibrated to each keep rate; the model's own thresholds and train/eval state are
    restored afterwards.

    Args:
        model: A converted (trained) model; `score` is called with it in eval mode (sparse execution).
        calibration_images: Images the thresholds are calibrated on (e.g. a batch of training images).
        keep_rates_to_try: Keep rates in [0, 1].
        score: Evaluates the calibrated model; called once per rate.
        per_layer: Calibrate each dispatcher to the rate (True) or shift one shared threshold (False, the default:
            it keeps a trained model's choice of which layers compute; equal rates cost mini-VTAB models 9.6
            points at keep rate 0.5, docs/minivtab.md).
    """
    gates = dispatchers(model)
    saved = [g.logit_threshold.clone() for g in gates]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        rows = []
        for rate in keep_rates_to_try:
            calibrate(model, calibration_images.to(device), rate, per_layer=per_layer)
            model.eval()
            rows.append(score(float(rate)))
        return rows
    finally:
        for gate, value in zip(gates, saved):
            gate.logit_threshold.copy_(value)
        model.train(was_training)


def budget_curve(
        model: nn.Module,
        calibration_images: torch.Tensor,
        keep_rates_to_try: Sequence[float],
        score: Callable[[], Dict[str, Any]],
        per_layer: bool = False,
        as_trained: bool = False,
) -> List[Dict[str, Any]]:
    """Accuracy against compute without retraining: one row per keep rate, `target_keep_rate` then what score()
    measures with the thresholds calibrated to it (see `sweep_keep_rates`, which restores the model afterwards).

    Args:
        model: A converted (trained) model with dispatchers.
        calibration_images: Images the thresholds are calibrated on.
        keep_rates_to_try: Target mean keep rates in [0, 1].
        score: Measures the model as it is (its accuracy, keep rate, MACs, ...).
        per_layer: See `sweep_keep_rates`.
        as_trained: Lead with a row of the trained thresholds (`target_keep_rate` None).
    """
    rows = [{"target_keep_rate": None, **score()}] if as_trained else []
    return rows + sweep_keep_rates(model, calibration_images, keep_rates_to_try,
                                   lambda rate: {"target_keep_rate": rate, **score()}, per_layer)
