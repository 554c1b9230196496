"""Registry of the adaptation methods the engine compares (`--method`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict

from torch import nn

from .baselines import add_deep_prompts, add_lora
from .convert import convert
from .loss import DynamicObjective, TaskObjective

__all__ = ["Method", "METHODS", "register_method", "build_objective"]


@dataclass(frozen=True)
class Method:
    """How a method changes the backbone and what it trains with.

    Args:
        name: The `--method` value.
        apply: (frozen timm backbone, TrainConfig) -> the same backbone, changed in place; must leave only the
            method's parameters (and the backbone's own classifier, if any) trainable.
        dynamic: Has token dispatchers: trained with the rate loss, evaluated with keep rates.
        distill: Trained with the complete model's loss and distillation into the dynamic model (dynamic only).
        moe: Uses the mixture-of-experts adapter (`experts` setting).
        caches_features: The backbone is frozen and the head alone trains, so features may be computed once.
        lr_scale: Factor on the learning rate (full fine-tuning uses 1/10, as the paper).
    """

    name: str
    apply: Callable[[nn.Module, Any], nn.Module]
    dynamic: bool = False
    distill: bool = False
    moe: bool = False
    caches_features: bool = False
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.distill and not self.dynamic:
            raise ValueError(f"method {self.name!r}: distill=True needs dynamic=True (a complete model to distil)")


METHODS: Dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method to the registry; a name already taken is an error."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def _freeze_but_head(model: nn.Module, cfg: Any = None) -> nn.Module:
    """Linear probing: only the backbone's own classifier trains (a task's head on the features trains anyway)."""
    model.requires_grad_(False)
    heads = model.get_classifier()
    for head in heads if isinstance(heads, tuple) else (heads,):
        head.requires_grad_(True)
    return model


def _dyt(model: nn.Module, cfg: Any) -> nn.Module:
    return convert(model, cfg.dyt_config())


def _dyt_moe(model: nn.Module, cfg: Any) -> nn.Module:
    return convert(model, cfg.dyt_config(experts=cfg.experts))


def _adaptformer(model: nn.Module, cfg: Any) -> nn.Module:
    return convert(model, cfg.dyt_config(layers=()))


def _lora(model: nn.Module, cfg: Any) -> nn.Module:
    return add_lora(_freeze_but_head(model), cfg.lora_rank, cfg.lora_alpha)


def _vpt(model: nn.Module, cfg: Any) -> nn.Module:
    return add_deep_prompts(_freeze_but_head(model), cfg.vpt_tokens)


def _full(model: nn.Module, cfg: Any) -> nn.Module:
    return model.requires_grad_(True)


for _m in (
    Method("dyt", _dyt, dynamic=True, distill=True),
    Method("dyt-nodistill", _dyt, dynamic=True),
    Method("dyt-moe", _dyt_moe, dynamic=True, distill=True, moe=True),
    Method("adaptformer", _adaptformer),
    Method("lora", _lora),
    Method("vpt", _vpt),
    Method("linear", _freeze_but_head, caches_features=True),
    Method("full", _full, lr_scale=0.1),
):
    register_method(_m)


def build_objective(method: Method, task: Any, cfg: Any) -> nn.Module:
    """The training objective of `method` on `task`: the DyT objective for dynamic methods, the task loss alone
    otherwise; `cfg.distill` overrides the method's distillation."""
    distill = method.distill if cfg.distill is None else cfg.distill
    if distill and not method.dynamic:
        raise ValueError(f"distill=true: method {cfg.method!r} has no dynamic model to distil into; use a dyt* method")
    if method.dynamic:
        return DynamicObjective(task.loss, task.distill_loss, target_rate=cfg.target_rate,
                                rate_weight=cfg.rate_weight, distill=distill, loss_name=task.loss_name)
    return TaskObjective(task.loss, loss_name=task.loss_name)
