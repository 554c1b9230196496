"""A toy task registered from outside dytune: per-image regression of the mean brightness, with a two-view
(image and mirror image) inference step and a lower-is-better metric. Loaded with `custom_imports`."""
from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from dytune import distributed
from dytune.tasks import Metric, Task, register_task


class Regressor(nn.Module):
    """Backbone features -> one number per image."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, nn.Linear(backbone.num_features, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))[:, 0]


class MeanAbsoluteError(Metric):
    primary, greater_is_better = "mae", False

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # |error|, samples

    def update(self, output: torch.Tensor, targets: torch.Tensor) -> None:
        self.sums += torch.stack([(output.double() - targets).abs().sum(), torch.tensor(float(len(targets)))])

    def reduce(self) -> None:
        distributed.all_reduce_sum(self.sums)

    def compute(self) -> Dict[str, Any]:
        return {"mae": (self.sums[0] / self.sums[1].clamp(min=1)).item()}


@register_task
class BrightnessTask(Task):
    name, datasets = "toy_brightness", ("toy_brightness",)

    def build_dataset(self, train: bool) -> Dataset:
        gen = torch.Generator().manual_seed(0 if train else 1)
        images = torch.rand(24 if train else 10, 3, self.cfg.img_size, self.cfg.img_size, generator=gen)
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
        return (model(inputs) + model(inputs.flip(-1))) / 2

    def metric(self, num_classes: int, device: torch.device = torch.device("cpu")) -> Metric:
        return MeanAbsoluteError(device)

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, 3, self.cfg.img_size, self.cfg.img_size)
