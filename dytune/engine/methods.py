"""Registry of the adaptation methods the engine compares (`--method`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..baselines import add_deep_prompts, add_lora
from ..convert import convert
from ..loss import DyTLoss


@dataclass(frozen=True)
class Method:
    """How a method changes the backbone and what it trains with.

    Args:
        name: The `--method` value.
        apply: (frozen timm model, TrainConfig) -> model to train; must leave only the method's parameters trainable.
        dynamic: Trained with DyTLoss (token dispatchers).
        lr_scale: Factor on the learning rate (full fine-tuning uses 1/10, as the paper).
    """

    name: str
    apply: Callable[[nn.Module, "TrainConfig"], nn.Module]  # noqa: F821
    dynamic: bool = False
    lr_scale: float = 1.0


METHODS: Dict[str, Method] = {}


def register_method(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def _freeze_but_head(model: nn.Module) -> nn.Module:
    model.requires_grad_(False)
    heads = model.get_classifier()
    for head in heads if isinstance(heads, tuple) else (heads,):
        head.requires_grad_(True)
    return model


def _dyt(model, cfg):
    return convert(model, cfg.dyt_config())


def _adaptformer(model, cfg):
    return convert(model, cfg.dyt_config(layers=()))


def _lora(model, cfg):
    return add_lora(_freeze_but_head(model), cfg.lora_rank, cfg.lora_alpha)


def _vpt(model, cfg):
    return add_deep_prompts(_freeze_but_head(model), cfg.vpt_tokens)


def _full(model, cfg):
    return model.requires_grad_(True)


for _m in (
    Method("dyt", _dyt, dynamic=True),
    Method("dyt-nodistill", _dyt, dynamic=True),
    Method("dyt-moe", _dyt, dynamic=True),
    Method("adaptformer", _adaptformer),
    Method("lora", _lora),
    Method("vpt", _vpt),
    Method("linear", lambda model, cfg: _freeze_but_head(model)),
    Method("full", _full, lr_scale=0.1),
):
    register_method(_m)


class CrossEntropyObjective(nn.Module):
    """Plain classification loss with DyTLoss's call signature: (model, images, targets) -> (loss, parts)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, Dict]:
        loss = F.cross_entropy(model(images), targets, label_smoothing=self.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"cross-entropy loss is not finite: {float(loss.detach())}")
        return loss, {"ce": loss.detach(), "loss": loss.detach()}


def build_objective(cfg) -> nn.Module:
    """DyTLoss for the DyT family (no distillation for dyt-nodistill), cross-entropy otherwise."""
    if METHODS[cfg.method].dynamic:
        return DyTLoss(target_rate=cfg.target_rate, rate_weight=cfg.rate_weight,
                       distill=cfg.method != "dyt-nodistill", label_smoothing=cfg.label_smoothing)
    return CrossEntropyObjective(cfg.label_smoothing)
