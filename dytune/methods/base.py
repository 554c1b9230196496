"""The method contract and registry: what a method is (`Method`), its settings base (`NoSettings`), the registry
(`register_method`, `METHODS`) and the training objective every method gets (`build_objective`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, List, Type

from torch import nn

from ..backbones import backbone_for
from ..core.loss import DynamicObjective, TaskObjective
from ..utils.settings import Settings

__all__ = ["METHODS", "Method", "NoSettings", "build_objective", "freeze_but_head", "methods_reading",
           "register_method"]


@dataclass
class NoSettings(Settings):
    """A method without settings of its own (linear probing, full fine-tuning)."""

    group: ClassVar[str] = "none"


@dataclass(frozen=True)
class Method:
    """How a method changes the backbone and what it trains with.

    Args:
        name: The `--method` value.
        apply: (frozen timm backbone, the method's settings) -> the same backbone, changed in place; must leave only
            the method's parameters (and the backbone's own classifier, if any) trainable.
        settings: The method's settings class; `apply` gets an instance of it (`TrainConfig.method_settings()`).
        dynamic: Has token dispatchers: trained with the rate loss, evaluated with keep rates; `settings` is then a
            DyTSettings (`dytune.methods.dyt`).
        distill: Trained with the complete model's loss and distillation into the dynamic model (dynamic only).
        moe: Uses the mixture-of-experts adapter (`experts` setting).
        caches_features: The backbone is frozen and the head alone trains, so features may be computed once.
        lr_scale: Factor on the learning rate (full fine-tuning uses 1/10, as the paper).
    """

    name: str
    apply: Callable[[nn.Module, Any], nn.Module]
    settings: Type[Settings] = NoSettings
    dynamic: bool = False
    distill: bool = False
    moe: bool = False
    caches_features: bool = False
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.distill and not self.dynamic:
            raise ValueError(f"method {self.name!r}: distill=True needs dynamic=True (a complete model to distil)")
        if not (isinstance(self.settings, type) and issubclass(self.settings, Settings)):
            raise TypeError(f"method {self.name!r}: settings must be a dytune.utils.settings.Settings dataclass, "
                            f"got {self.settings!r}")
        missing = [f for f in ("target_rate", "rate_weight", "distill") if f not in self.settings.__dataclass_fields__]
        if self.dynamic and missing:
            raise ValueError(f"method {self.name!r}: a dynamic method's settings must extend DyTSettings "
                             f"(dytune.methods.dyt; the objective reads target_rate, rate_weight and distill); "
                             f"{self.settings.__name__} lacks {', '.join(missing)}")
        if self.moe and "experts" not in self.settings.__dataclass_fields__:
            raise ValueError(f"method {self.name!r}: moe=True needs settings extending MoESettings (experts)")

METHODS: Dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method to the registry; a name already taken is an error."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def methods_reading(settings: Type[Settings]) -> List[str]:
    """Names of the registered methods whose settings include `settings` (e.g. every DyT method for
    AdapterSettings)."""
    return [name for name, m in METHODS.items() if issubclass(m.settings, settings)]


def freeze_but_head(model: nn.Module, settings: Any = None) -> nn.Module:
    """Freeze the backbone but its own classifier (a task's head on the features trains anyway): linear probing, and
    the start of every method that adds parameters."""
    model.requires_grad_(False)
    for head in backbone_for(model, "linear probing").classifier_heads():
        head.requires_grad_(True)
    return model


def build_objective(method: Method, task: Any, settings: Settings) -> nn.Module:
    """The training objective of `method` on `task`: the DyT objective for dynamic methods (its keep rate, rate
    weight and distillation from `settings`, the method's), the task loss alone otherwise."""
    if method.dynamic:
        distill = method.distill if settings.distill is None else settings.distill
        return DynamicObjective(task.loss, task.distill_loss, target_rate=settings.target_rate,
                                rate_weight=settings.rate_weight, distill=distill, loss_name=task.loss_name)
    return TaskObjective(task.loss, loss_name=task.loss_name)
