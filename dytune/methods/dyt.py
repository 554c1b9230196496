"""Dynamic Tuning: the adapter settings shared with AdaptFormer, DyT's dispatcher and objective settings, and the
methods dyt, dyt-nodistill and dyt-moe (the mixture-of-experts adapter)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

from torch import nn

from ..core.config import DyTConfig, dyt_setting
from ..core.convert import convert
from ..utils.settings import AT_LEAST_0, Settings, setting
from .base import Method, register_method

__all__ = ["AdapterSettings", "DyTSettings", "MoESettings"]


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


def convert_with(model: nn.Module, settings: AdapterSettings) -> nn.Module:
    """`dytune.convert` with the DyTConfig of `settings` (AdaptFormer's: no dispatcher)."""
    return convert(model, settings.dyt_config())


register_method(Method("dyt", convert_with, DyTSettings, dynamic=True, distill=True))
register_method(Method("dyt-nodistill", convert_with, DyTSettings, dynamic=True))
register_method(Method("dyt-moe", convert_with, MoESettings, dynamic=True, distill=True, moe=True))
