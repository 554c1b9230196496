"""Registry of the adaptation methods the engine compares (`--method`), each with its own settings class.

A method declares what it is (`Method`: how it changes the backbone and what the engine trains it with) and which
settings it reads (a `Settings` dataclass, PEFT's per-method config); `apply` receives that settings object alone.
`TrainConfig` holds every built-in method's settings as flat keys (`lora_rank=4`), and `dytune train --help-config`
lists them grouped by the methods that read them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, Optional, Sequence, Type

from torch import nn

from .backbones import backbone_for
from .baselines import add_deep_prompts, add_lora
from .config import DyTConfig, dyt_setting
from .convert import convert
from .loss import DynamicObjective, TaskObjective
from .settings import AT_LEAST_0, AT_LEAST_1, Settings, setting

__all__ = ["AdapterSettings", "DyTSettings", "LoRASettings", "METHODS", "Method", "MoESettings", "NoSettings",
           "VPTSettings", "build_objective", "methods_reading", "register_method"]


@dataclass
class NoSettings(Settings):
    """A method without settings of its own (linear probing, full fine-tuning)."""

    group: ClassVar[str] = "none"


@dataclass
class AdapterSettings(Settings):
    """The bottleneck adapters beside the frozen sub-blocks (AdaptFormer, and every DyT method)."""

    group: ClassVar[str] = "adapter"
    variant: str = dyt_setting("variant")
    bottleneck: int = dyt_setting("bottleneck")
    adapter_scale: float = dyt_setting("adapter_scale")
    adapter_dropout: float = dyt_setting("adapter_dropout")

    def dyt_config(self, layers: Optional[Sequence[int]] = ()) -> DyTConfig:
        """The DyTConfig of adapters alone (`layers=()`: no block dispatches)."""
        return self._dyt_config(layers=layers)

    def _dyt_config(self, **fixed: Any) -> DyTConfig:
        """A DyTConfig of the DyTConfig fields these settings declare and `fixed`; the others keep their defaults."""
        shared = [f.name for f in dataclasses.fields(self) if f.name in DyTConfig.__dataclass_fields__]
        return DyTConfig(**{**{name: getattr(self, name) for name in shared}, **fixed})


@dataclass
class DyTSettings(AdapterSettings):
    """Dynamic Tuning: adapters plus a token dispatcher per block, trained towards a keep rate."""

    group: ClassVar[str] = "dyt"
    target_rate: float = dyt_setting("target_rate")
    rate_weight: float = setting("Weight of the rate loss", 2.0, AT_LEAST_0)
    distill: Optional[bool] = setting("Train with the complete model's loss and its distillation into the dynamic "
                                      "model (None: the method's default, on for dyt and dyt-moe)", None)
    tau: float = dyt_setting("tau")
    tau_final: Optional[float] = dyt_setting("tau_final")

    def dyt_config(self, layers: Optional[Sequence[int]] = None, experts: int = 1) -> DyTConfig:
        """The DyTConfig of `dytune.convert` (`layers=None`: every block dispatches)."""
        return self._dyt_config(layers=layers, experts=experts)


@dataclass
class MoESettings(DyTSettings):
    """DyT with the mixture-of-experts adapter (DyT-dagger)."""

    group: ClassVar[str] = "moe"
    experts: int = dyt_setting("experts", default=4)  # dyt-moe's default; DyTConfig's 1 is the plain adapter

    def dyt_config(self, layers: Optional[Sequence[int]] = None, experts: Optional[int] = None) -> DyTConfig:
        return super().dyt_config(layers, self.experts if experts is None else experts)


@dataclass
class LoRASettings(Settings):
    """LoRA on the attention's qkv projection."""

    group: ClassVar[str] = "lora"
    lora_rank: int = setting("LoRA rank on qkv", 8, AT_LEAST_1)
    lora_alpha: float = setting("LoRA scaling numerator (scale = alpha / rank)", 8.0)


@dataclass
class VPTSettings(Settings):
    """VPT-deep: learnable prompt tokens in every block."""

    group: ClassVar[str] = "vpt"
    vpt_tokens: int = setting("VPT-deep prompt tokens per block", 10, AT_LEAST_1)


@dataclass(frozen=True)
class Method:
    """How a method changes the backbone and what it trains with.

    Args:
        name: The `--method` value.
        apply: (frozen timm backbone, the method's settings) -> the same backbone, changed in place; must leave only
            the method's parameters (and the backbone's own classifier, if any) trainable.
        settings: The method's settings class; `apply` gets an instance of it (`TrainConfig.method_settings()`).
        dynamic: Has token dispatchers: trained with the rate loss, evaluated with keep rates; `settings` is then a
            DyTSettings.
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
            raise TypeError(f"method {self.name!r}: settings must be a dytune.settings.Settings dataclass, "
                            f"got {self.settings!r}")
        if self.dynamic and not issubclass(self.settings, DyTSettings):
            raise ValueError(f"method {self.name!r}: a dynamic method's settings must extend DyTSettings (the "
                             f"objective reads target_rate, rate_weight and distill from them)")
        if self.moe and not issubclass(self.settings, MoESettings):
            raise ValueError(f"method {self.name!r}: moe=True needs settings extending MoESettings (experts)")


METHODS: Dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method to the registry; a name already taken is an error."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def methods_reading(settings: Type[Settings]) -> list:
    """Names of the registered methods whose settings include `settings` (e.g. every DyT method for
    AdapterSettings)."""
    return [name for name, m in METHODS.items() if issubclass(m.settings, settings)]


def _freeze_but_head(model: nn.Module, settings: Any = None) -> nn.Module:
    """Linear probing: only the backbone's own classifier trains (a task's head on the features trains anyway)."""
    model.requires_grad_(False)
    for head in backbone_for(model, "linear probing").classifier_heads():
        head.requires_grad_(True)
    return model


def _dyt(model: nn.Module, settings: DyTSettings) -> nn.Module:
    return convert(model, settings.dyt_config())


def _adaptformer(model: nn.Module, settings: AdapterSettings) -> nn.Module:
    return convert(model, settings.dyt_config(layers=()))


def _lora(model: nn.Module, settings: LoRASettings) -> nn.Module:
    return add_lora(_freeze_but_head(model), settings.lora_rank, settings.lora_alpha)


def _vpt(model: nn.Module, settings: VPTSettings) -> nn.Module:
    return add_deep_prompts(_freeze_but_head(model), settings.vpt_tokens)


def _full(model: nn.Module, settings: NoSettings) -> nn.Module:
    return model.requires_grad_(True)


for _m in (
    Method("dyt", _dyt, DyTSettings, dynamic=True, distill=True),
    Method("dyt-nodistill", _dyt, DyTSettings, dynamic=True),
    Method("dyt-moe", _dyt, MoESettings, dynamic=True, distill=True, moe=True),
    Method("adaptformer", _adaptformer, AdapterSettings),
    Method("lora", _lora, LoRASettings),
    Method("vpt", _vpt, VPTSettings),
    Method("linear", _freeze_but_head, caches_features=True),
    Method("full", _full, lr_scale=0.1),
):
    register_method(_m)


def build_objective(method: Method, task: Any, settings: Settings) -> nn.Module:
    """The training objective of `method` on `task`: the DyT objective for dynamic methods (its keep rate, rate
    weight and distillation from `settings`, the method's), the task loss alone otherwise."""
    if method.dynamic:
        distill = method.distill if settings.distill is None else settings.distill
        return DynamicObjective(task.loss, task.distill_loss, target_rate=settings.target_rate,
                                rate_weight=settings.rate_weight, distill=distill, loss_name=task.loss_name)
    return TaskObjective(task.loss, loss_name=task.loss_name)
