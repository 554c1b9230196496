"""Video recognition: every frame through the (DyT) image backbone, attentive pooling over all frames' tokens and a
linear head; Kinetics-400 and Something-Something-v2 layouts, multi-view testing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .datasets import VideoDataset
from .recipes import VideoRecipe, kinetics_recipe, ssv2_recipe
from ...core.loss import distill_kl
from .model import POOLS, VideoClassifier
from ...utils.settings import AT_LEAST_1, Settings, setting
from ..base import Task, register_task
from ..classification.task import top_classes
from ..classification.metric import ClassificationMetric

__all__ = ["VideoTask", "SSV2_LABELS", "ssv2_split_file"]

SSV2_LABELS = "something-something-v2-labels.json"


def ssv2_split_file(root: Path, split: str) -> Path:
    """`something-something-v2-<split>.json` in `root` (split: train, validation, test)."""
    return root / f"something-something-v2-{split}.json"


@dataclass
class VideoSettings(Settings):
    """The video task's settings (dataset=k400 or ssv2): clip sampling, test views, decoding, the pooling's order."""

    group: ClassVar[str] = "video"
    num_frames: int = setting("Video: frames per clip (K400: dense frames; SSv2: one per TSN segment)", 8, AT_LEAST_1)
    frame_stride: int = setting("Video, K400 layout: frames between two sampled frames", 16, AT_LEAST_1)
    test_views: int = setting("Video at test: temporal views (K400) or spatial crops (SSv2), logits averaged", 3,
                              AT_LEAST_1)
    temporal_embed: bool = setting("Video: add a learnable embedding per frame index before the attentive pooling "
                                   "(off: the paper's order-blind pooling)", False)
    video_pool: str = setting("Video: tokens (one attentive pool over the tokens of all frames, blind to frame "
                              "order: the paper's) or frames (the pool on each frame, the frames concatenated in "
                              "order: order-aware)", "tokens", choices=POOLS)
    skip_bad_videos: bool = setting("Video: skip missing or undecodable videos (counted in results.json) instead "
                                    "of failing", False)
    video_backend: str = setting("Video decoder: auto (torchcodec when it imports, else PyAV), pyav or torchcodec",
                                 "auto", choices=("auto", "pyav", "torchcodec"))


@register_task
class VideoTask(Task):
    """Clips of `num_frames` frames; K400 (`dataset=k400`: list files `<split>.txt` of `<video path> <label>` under
    `data_root`, optional `classes.txt`) or SSv2 (`dataset=ssv2`: `something-something-v2-labels.json` and
    `something-something-v2-<split>.json` in `data_root`, videos `<id>.webm` in `data_root/videos` or `data_root`;
    a split may name several JSON files, comma-separated, e.g. `train,validation`; a `<split>.txt` list file in
    the K400 format is read instead when it exists).

    Training clips are one view; test clips are `test_views` views (temporal for K400, spatial crops for SSv2)
    whose logits are averaged. The metric is top-1 (primary), top-5 and mean per-class accuracy.
    """

    name = "video"
    settings = VideoSettings
    datasets = ("k400", "ssv2")
    loss_name = "ce"
    sample_unit = "clip"

    def recipe(self) -> VideoRecipe:
        cfg = self.cfg
        if cfg.dataset == "k400":
            return kinetics_recipe(cfg.img_size, cfg.num_frames, cfg.frame_stride, cfg.test_views, mean=cfg.mean,
                                   std=cfg.std)
        return ssv2_recipe(cfg.img_size, cfg.num_frames, cfg.test_views, mean=cfg.mean, std=cfg.std)

    def _options(self) -> Dict[str, Any]:
        cfg = self.cfg
        return dict(backend=cfg.video_backend, cache=cfg.cache_images, skip_bad_videos=cfg.skip_bad_videos)

    def build_dataset(self, train: bool) -> VideoDataset:
        cfg, recipe = self.cfg, self.recipe()
        root = Path(cfg.data_root)
        split = cfg.train_split if train else cfg.eval_split
        transform = recipe.train_transform if train else recipe.test_transform
        listed = root / f"{split}.txt"
        if cfg.dataset == "k400" or listed.is_file():
            names = root / "classes.txt"
            return VideoDataset.from_list(root, listed, recipe.sampler, transform,
                                          classes=names if names.is_file() else None, train=train, **self._options())
        labels = root / SSV2_LABELS
        if not labels.is_file():
            raise FileNotFoundError(f"{labels}: not found; dataset=ssv2 reads {SSV2_LABELS} and "
                                    f"something-something-v2-<split>.json from data_root (or <split>.txt lists)")
        files = [ssv2_split_file(root, s.strip()) for s in split.split(",") if s.strip()]
        videos = root / "videos" if (root / "videos").is_dir() else root
        return VideoDataset.from_ssv2(videos, files, labels, recipe.sampler, transform, train=train,
                                      **self._options())

    def num_classes(self, dataset: Dataset) -> int:
        return len(dataset.classes)

    def add_head(self, backbone: nn.Module, num_classes: int) -> nn.Module:
        return VideoClassifier(backbone, num_classes, self.cfg.num_frames, temporal_embed=self.cfg.temporal_embed,
                               pool=self.cfg.video_pool)

    def head(self, model: nn.Module) -> Sequence[nn.Module]:
        return model.trainable_modules()

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, targets, label_smoothing=self.cfg.label_smoothing)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, targets: Any) -> torch.Tensor:
        return distill_kl(student, teacher)

    def metric(self, num_classes: int, device: torch.device = torch.device("cpu")) -> ClassificationMetric:
        return ClassificationMetric(num_classes, primary="acc", topk=(5,), device=device)

    def views(self) -> int:
        return self.recipe().test_views

    def infer(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes] of test views [B, V, T, 3, H, W]: the model's per-view logits averaged over the
        views (clips [B, T, 3, H, W] are one view each)."""
        logits = model(inputs)
        return logits.mean(1) if inputs.ndim == 6 else logits

    def example_input(self) -> torch.Tensor:
        """One test sample: [1, views, frames, 3, H, W] (what evaluation feeds `infer`, so MACs are per clip)."""
        size = self.cfg.img_size
        return torch.zeros(1, self.views(), self.cfg.num_frames, 3, size, size)

    def finalize_metrics(self, metrics: Dict[str, Any]) -> Dict[str, Any]:
        """Adds `gmacs_per_view`, the cost of one view of a clip (the paper quotes GFLOPs per view)."""
        return {**metrics, "gmacs_per_view": metrics["gmacs"] / self.views()}

    # ---- prediction on files -------------------------------------------------------------------------------------
    def load_sample(self, path: Path) -> torch.Tensor:
        """The test views of one video file, [views, frames, 3, H, W]."""
        recipe = self.recipe()
        one = VideoDataset(path.parent, [(path.name, 0)], ["?"], recipe.sampler, recipe.test_transform, train=False,
                           backend=self.cfg.video_backend)
        return one[0][0]

    def describe_prediction(self, output: torch.Tensor, classes: Optional[List[str]], top_k: int) -> Dict[str, Any]:
        return top_classes(output, classes, top_k)

    def save_skip_map(self, model: nn.Module, sample: torch.Tensor, path: Path, title: str = "") -> Path:
        from ...viz import plot_frame_skip_maps

        return plot_frame_skip_maps(model, sample[:1].to(next(model.parameters()).device), path, self.cfg.mean,
                                    self.cfg.std, title=title)
