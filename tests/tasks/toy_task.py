"""A toy task and a toy method registered from outside dytune, loaded with `custom_imports`.

The task regresses each image's mean brightness, with its own settings (the training set size and whether
inference averages the mirror image), a two-view inference step and a metric that is not a sum (the median
absolute error needs every sample: its `reduce` gathers them). The method is AdaptFormer with one setting of its
own, a fixed gain on the adapter output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from dytune import convert
from dytune.utils import distributed
from dytune.methods import AdapterSettings, Method, register_method
from dytune.utils.settings import AT_LEAST_1, POSITIVE, Settings, setting
from dytune.tasks import Metric, Task, register_task


class Regressor(nn.Module):
    """Backbone features -> one number per image."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, nn.Linear(backbone.num_features, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))[:, 0]


class AbsoluteErrors(Metric):
    """Mean and median absolute error; the median needs every sample, so `reduce` gathers them."""

    primary, greater_is_better = "mae", False

    def __init__(self, device: torch.device) -> None:
        self.errors: List[torch.Tensor] = [torch.zeros(0, dtype=torch.float64, device=device)]

    def update(self, output: torch.Tensor, targets: torch.Tensor) -> None:
        self.errors.append((output.double() - targets).abs())

    def reduce(self) -> None:
        self.errors = [distributed.all_gather_rows(torch.cat(self.errors))]

    def compute(self) -> Dict[str, Any]:
        errors = torch.cat(self.errors)
        return {"mae": errors.mean().item(), "median_ae": errors.median().item()}


@dataclass
class BrightnessSettings(Settings):
    group: ClassVar[str] = "toy_brightness"
    toy_train_images: int = setting("Training images of the toy task", 24, AT_LEAST_1)
    toy_mirror_view: bool = setting("Average the prediction of the mirror image at inference", True)


@register_task
class BrightnessTask(Task):
    name, datasets, settings = "toy_brightness", ("toy_brightness",), BrightnessSettings

    def build_dataset(self, train: bool) -> Dataset:
        gen = torch.Generator().manual_seed(0 if train else 1)
        size = self.cfg.img_size
        images = torch.rand(self.cfg.toy_train_images if train else 10, 3, size, size, generator=gen)
        images = images * torch.rand(len(images), 1, 1, 1, generator=gen)
        return TensorDataset(images * 2 - 1, images.mean(dim=(1, 2, 3)).double())

    def num_classes(self, dataset: Dataset) -> int:
        return 1

    def add_head(self, backbone: nn.Module, num_classes: int) -> nn.Module:
        return Regressor(backbone)

    def head(self, model: nn.Module):
        return (model.head,)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, targets.float())

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, targets: Any) -> torch.Tensor:
        return F.mse_loss(student, teacher)

    def infer(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        if not self.cfg.toy_mirror_view:
            return model(inputs)
        return (model(inputs) + model(inputs.flip(-1))) / 2

    def metric(self, num_classes: int, device: torch.device = torch.device("cpu")) -> Metric:
        return AbsoluteErrors(device)

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, 3, self.cfg.img_size, self.cfg.img_size)


@dataclass
class GainSettings(AdapterSettings):
    group: ClassVar[str] = "toy_gain"
    toy_adapter_gain: float = setting("Factor on the adapter output, on top of adapter_scale", 1.0, POSITIVE)


def _gained_adapters(model: nn.Module, settings: GainSettings) -> nn.Module:
    config = settings.dyt_config(layers=())
    config.adapter_scale *= settings.toy_adapter_gain
    return convert(model, config)


register_method(Method("toy-gain-adapter", _gained_adapters, GainSettings))
