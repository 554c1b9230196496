"""Image classification: a timm ViT with its own classifier head, cross-entropy, top-1 / mean per-class accuracy."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from PIL import Image
from torch.utils.data import Dataset

from ...backbones import backbone_for
from .data import DATASETS, MEAN_PER_CLASS, build_dataset, build_transform, num_classes_of
from ...core.loss import distill_kl
from ...viz import plot_skip_maps
from ..base import Task, register_task
from .metric import ClassificationMetric

__all__ = ["ClassificationTask", "top_classes"]


def top_classes(logits: torch.Tensor, classes: Optional[List[str]], top_k: int) -> Dict[str, Any]:
    """`label` (the top class name) and `top`: [name, probability] of the `top_k` most probable classes."""
    probs = logits.float().softmax(dim=-1)
    values, indices = probs.topk(min(top_k, probs.numel()))
    names = [classes[i] if classes and i < len(classes) else str(i) for i in indices.tolist()]
    return {"label": names[0], "top": [[n, float(v)] for n, v in zip(names, values.tolist())]}


@register_task
class ClassificationTask(Task):
    """One label per image: VTAB-1K folders, ImageFolder trees and the paper's torchvision datasets.

    The backbone keeps timm's classifier (`get_classifier()`), resized to the class count; the mean per-class
    accuracy is the primary metric where the paper reports it (FGVC-Aircraft, Oxford-IIIT Pet, Flowers-102).
    """

    name = "classification"
    class_token_head = True
    datasets = DATASETS
    loss_name = "ce"

    def build_dataset(self, train: bool) -> Dataset:
        return build_dataset(self.cfg, train=train)

    def num_classes(self, dataset: Dataset) -> int:
        return num_classes_of(dataset)

    def backbone_classes(self, num_classes: int) -> int:
        return num_classes

    def reset_head(self, model: nn.Module) -> None:
        """Weights trunc-normal (std 0.01) and biases zero, as the official DyT scripts do after loading the
        backbone: timm keeps a pre-trained classifier whose class count happens to equal the task's."""
        for head in self.head(model):
            for layer in head.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.trunc_normal_(layer.weight, std=0.01)
                    if layer.bias is not None:
                        nn.init.zeros_(layer.bias)

    def head(self, model: nn.Module) -> Sequence[nn.Module]:
        return backbone_for(model).classifier_heads()

    def feature_cache(self, model: nn.Module) -> Optional[Tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module]]:
        head = model.get_classifier()
        if self.cfg.augment != "none" or not isinstance(head, nn.Module):  # augmented images; two-headed models
            return None
        return (lambda images: model.forward_head(model.forward_features(images), pre_logits=True)), head

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, targets, label_smoothing=self.cfg.label_smoothing)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, targets: Any) -> torch.Tensor:
        return distill_kl(student, teacher)

    def metric(self, num_classes: int, device: torch.device = torch.device("cpu")) -> ClassificationMetric:
        primary = "mean_per_class_acc" if self.cfg.dataset in MEAN_PER_CLASS else "acc"
        return ClassificationMetric(num_classes, primary=primary, device=device)

    def load_sample(self, path: Path) -> torch.Tensor:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image not found")
        try:
            with Image.open(path) as image:
                image.load()
                picture = image.copy()
        except (OSError, SyntaxError) as e:
            raise ValueError(f"{path}: not a readable image ({e})") from e
        cfg = self.cfg
        return build_transform(cfg.img_size, cfg.augment, False, tuple(cfg.mean), tuple(cfg.std))(picture)

    def describe_prediction(self, output: torch.Tensor, classes: Optional[List[str]], top_k: int) -> Dict[str, Any]:
        return top_classes(output, classes, top_k)

    def save_skip_map(self, model: nn.Module, sample: torch.Tensor, path: Path, title: str = "") -> Path:
        return plot_skip_maps(model, sample[None].to(next(model.parameters()).device), path, self.cfg.mean,
                              self.cfg.std, titles=[title] if title else None)

    def save_examples(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, path: Path,
                      classes: Optional[List[str]] = None) -> Path:
        """Skip maps of up to six images, one row each, titled with their labels."""
        shown = inputs[:6].to(next(model.parameters()).device)
        titles = [classes[int(t)] if classes else f"label {int(t)}" for t in targets[:6]]
        return plot_skip_maps(model, shown, path, self.cfg.mean, self.cfg.std, titles=titles)

    def example_input(self) -> torch.Tensor:
        size = self.cfg.model_kwargs.get("img_size", self.cfg.img_size)
        height, width = (size, size) if isinstance(size, int) else size
        return torch.zeros(1, int(self.cfg.model_kwargs.get("in_chans", 3)), height, width)
