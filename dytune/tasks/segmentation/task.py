"""Semantic segmentation: the (DyT) ViT's features of four blocks through a feature-pyramid neck, or a Swin's four
stages, to a UperNet head (+ FCN auxiliary head); ADE20K and COCO-Stuff 164k layouts, sliding-window or whole-image
testing, mIoU."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from ...data.lists import load_rgb
from .data import (ADE20K, COCOStuff, Normalize, SegmentationDataset, colorize, eval_transforms,
                                 make_palette, read_class_names, train_transforms)
from .metric import SegmentationMetric
from .model import (Segmenter, SegmentationLoss, default_out_indices, pixel_distillation, resize,
                                    slide_inference, sync_batchnorm, whole_inference)
from ...utils.settings import AT_LEAST_0, AT_LEAST_1, POSITIVE, Bounds, Settings, setting
from ...viz import denormalize
from ..base import Task, register_task
from ..classification.task import ClassificationTask

__all__ = ["SegmentationTask", "default_out_indices", "overlay"]

CLASSES_FILE = "classes.txt"


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image [H, W, 3] uint8 blended with a colour mask of the same size."""
    return (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).round().astype(np.uint8)


@dataclass
class SegmentationSettings(Settings):
    """The segmentation task's settings (dataset=ade20k or cocostuff; the crop is img_size): resizing, the test-time
    windows and the UperNet heads."""

    group: ClassVar[str] = "segmentation"
    seg_scale: List[int] = setting("Segmentation: the resize scale [long, short] of the training random resize and "
                                   "the test keep-ratio resize; [] = [4 * img_size, img_size] (ADE20K: 2048 x 512)",
                                   [], AT_LEAST_1)
    seg_ratio_range: List[float] = setting("Segmentation: the training random resize's ratio range", [0.5, 2.0],
                                           POSITIVE)
    seg_cat_max_ratio: float = setting("Segmentation: the most one class may cover of a training crop (re-drawn "
                                       "up to 10 times)", 0.75, Bounds(0, 1, low_open=True))
    seg_inference: str = setting("Segmentation at test: slide (img_size windows, logits averaged) or whole",
                                 "slide", choices=("slide", "whole"))
    seg_stride: int = setting("Segmentation: sliding-window stride; 0 = two thirds of img_size (341 at 512)", 0,
                              AT_LEAST_0)
    seg_channels: int = setting("Segmentation: UPerNet head width (the official DyT config: 768)", 768, AT_LEAST_1)
    seg_aux_weight: float = setting("Segmentation: weight of the FCN auxiliary head's loss (0: no auxiliary head)",
                                    0.4, AT_LEAST_0)
    seg_out_indices: List[int] = setting("Segmentation: blocks feeding the 4 pyramid levels (stages of a "
                                         "hierarchical backbone such as Swin); [] = (3, 5, 7, 11) for 12 blocks, else "
                                         "spread evenly ending at the last block (Swin: every stage)", [])


@register_task
class SegmentationTask(Task):
    """Per-pixel classification at crop `img_size`.

    `dataset=ade20k` reads the ADE20K layout under `data_root` (its 150 classes, or the classes of a `classes.txt`
    there, as in the mini-segmentation set); `dataset=cocostuff` the COCO-Stuff 164k layout (171 classes). Training
    samples go through the paper's pipeline (random resize to `seg_scale` x `seg_ratio_range`, random crop with
    `seg_cat_max_ratio`, flip, photometric distortion, pad); test images are resized keeping their ratio and
    predicted one at a time (`seg_inference`: sliding `img_size` windows every `seg_stride` pixels, or the whole
    image), the logits resized to the label map. The metric is mIoU (primary), mean class accuracy and pixel
    accuracy. The backbone runs with `dynamic_img_size`, its position embedding resized from the pre-trained grid.
    """

    name = "segmentation"
    settings = SegmentationSettings
    mergeable_tokens = False
    datasets = ("ade20k", "cocostuff")
    loss_name = "ce"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.criterion = SegmentationLoss(aux_weight=cfg.seg_aux_weight)

    # ---- data ----------------------------------------------------------------------------------------------------
    def scale(self) -> Tuple[int, int]:
        """The resize scale (long, short) of both pipelines."""
        cfg = self.cfg
        if not cfg.seg_scale:
            return 4 * cfg.img_size, cfg.img_size
        if len(cfg.seg_scale) != 2:
            raise ValueError(f"seg_scale={cfg.seg_scale}: expected [long, short] (e.g. [2048, 512])")
        return cfg.seg_scale[0], cfg.seg_scale[1]

    def stride(self) -> int:
        """The sliding-window stride (two thirds of the crop unless `seg_stride` sets it)."""
        cfg = self.cfg
        if cfg.seg_stride > cfg.img_size:
            raise ValueError(f"seg_stride={cfg.seg_stride} exceeds the window img_size={cfg.img_size}; windows would "
                             f"leave gaps")
        return cfg.seg_stride or max(1, round(cfg.img_size * 2 / 3))

    def build_dataset(self, train: bool) -> SegmentationDataset:
        cfg = self.cfg
        if len(cfg.seg_ratio_range) != 2 or cfg.seg_ratio_range[0] > cfg.seg_ratio_range[1]:
            raise ValueError(f"seg_ratio_range={cfg.seg_ratio_range}: expected [low, high] with low <= high")
        mean, std = tuple(cfg.mean), tuple(cfg.std)
        if train:
            transforms = train_transforms(cfg.img_size, self.scale(), tuple(cfg.seg_ratio_range),
                                          cfg.seg_cat_max_ratio, mean=mean, std=std)
        else:
            transforms = eval_transforms(self.scale(), mean=mean, std=std)
        root, split = Path(cfg.data_root), cfg.train_split if train else cfg.eval_split
        if cfg.dataset == "cocostuff":
            return COCOStuff(root, split, transforms)
        names = root / CLASSES_FILE
        return ADE20K(root, split, transforms, classes=read_class_names(names) if names.is_file() else None)

    def num_classes(self, dataset: Dataset) -> int:
        return dataset.num_classes

    def eval_batch_size(self) -> int:
        return 1  # test images keep their own sizes, as mmseg's batch-1 testing

    # ---- model ---------------------------------------------------------------------------------------------------
    def create_backbone(self, num_classes: int, pretrained: bool) -> nn.Module:
        """The timm backbone at `img_size` with `dynamic_img_size` (other sizes resize the position embedding, or
        build Swin's shift masks per size)."""
        cfg = self.cfg
        kwargs = {"img_size": cfg.img_size, "num_classes": 0, "dynamic_img_size": True, **cfg.model_kwargs}
        return timm.create_model(cfg.model, pretrained=pretrained, **kwargs)

    def add_head(self, backbone: nn.Module, num_classes: int) -> Segmenter:
        cfg = self.cfg
        return Segmenter(backbone, num_classes, tuple(cfg.seg_out_indices) or None, channels=cfg.seg_channels,
                         aux=cfg.seg_aux_weight > 0)

    def head(self, model: nn.Module) -> Sequence[nn.Module]:
        return model.trainable_modules()

    def distributed(self, model: nn.Module) -> nn.Module:
        # SyncBatchNorm runs on GPUs only; on CPU (gloo) each process keeps its own batch statistics
        on_gpu = next(model.parameters()).device.type == "cuda"
        return sync_batchnorm(model) if on_gpu else model

    # ---- objective -----------------------------------------------------------------------------------------------
    def loss(self, output: Any, targets: torch.Tensor) -> torch.Tensor:
        return self.criterion(output, targets)[0]

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return pixel_distillation(student, teacher, targets)

    # ---- inference and evaluation --------------------------------------------------------------------------------
    def infer(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        if self.cfg.seg_inference == "whole":
            return whole_inference(model, inputs, model.num_classes)
        return slide_inference(model, inputs, model.num_classes, crop=self.cfg.img_size, stride=self.stride())

    def metric(self, num_classes: int, device: torch.device = torch.device("cpu")) -> SegmentationMetric:
        return SegmentationMetric(num_classes, device=device)

    def example_input(self) -> torch.Tensor:
        """A square test image with the scale's short side (128 for the mini set's 128 px images, 512 for ADE20K),
        so that the dense reference costs what testing costs."""
        side = self.scale()[1]
        return torch.zeros(1, 3, side, side)

    # ---- prediction on files -------------------------------------------------------------------------------------
    def _read(self, path: Path) -> Tuple[torch.Tensor, torch.Tensor]:
        """The image [3, H, W] (0..255, float) and a blank label map for the pair transforms."""
        image = torch.from_numpy(np.array(load_rgb(path))).permute(2, 0, 1).float()
        return image, torch.zeros(image.shape[-2:], dtype=torch.int64)

    def load_sample(self, path: Path) -> torch.Tensor:
        """The image as evaluation feeds it: resized keeping its ratio to the scale, normalised, [3, H, W]."""
        return eval_transforms(self.scale(), tuple(self.cfg.mean), tuple(self.cfg.std), resize_mask=True)(
            *self._read(path))[0]

    def restore_prediction(self, output: torch.Tensor, sample: torch.Tensor,
                           path: Path) -> Tuple[torch.Tensor, torch.Tensor]:
        """The logits resized bilinearly to the image's own size, before any argmax (as mmseg's inference), and the
        image normalised at that size: the mask and overlay line up with the file."""
        image = Normalize(tuple(self.cfg.mean), tuple(self.cfg.std))(*self._read(path))[0]
        return resize(output[None].float(), image.shape[-2:])[0], image

    def describe_prediction(self, output: torch.Tensor, classes: Optional[List[str]], top_k: int) -> Dict[str, Any]:
        """The classes covering most pixels, as `top` [(name, share of the mask)], and the mask's `mask_size`
        [H, W] (the input image's, after `restore_prediction`)."""
        labels = output.argmax(dim=0)
        shares = torch.bincount(labels.flatten(), minlength=output.shape[0]).double() / labels.numel()
        values, order = shares.topk(min(top_k, len(shares)))
        names = [classes[i] if classes else str(int(i)) for i in order.tolist()]
        return {"top": [(n, float(v)) for n, v in zip(names, values) if v > 0], "mask_size": list(labels.shape)}

    def save_outputs(self, output: torch.Tensor, sample: torch.Tensor, folder: Path, stem: str,
                     classes: Optional[List[str]]) -> Dict[str, str]:
        """`<stem>_mask.png` (palette PNG, pixel value = class) and `<stem>_overlay.png` (the image with the mask), at
        the size of `output` (the image's, after `restore_prediction`)."""
        folder.mkdir(parents=True, exist_ok=True)
        labels = output.argmax(dim=0).cpu().numpy().astype(np.uint8)
        palette = make_palette(output.shape[0])
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(palette.flatten().tolist())
        image = (denormalize(sample, self.cfg.mean, self.cfg.std) * 255).round().byte().permute(1, 2, 0).numpy()
        written = {"mask": folder / f"{stem}_mask.png", "overlay": folder / f"{stem}_overlay.png"}
        mask.save(written["mask"])
        Image.fromarray(overlay(image, colorize(labels, palette))).save(written["overlay"])
        return {k: str(v) for k, v in written.items()}

    save_skip_map = ClassificationTask.save_skip_map  # an image sample, as classification's

    def save_examples(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, path: Path,
                      classes: Optional[List[str]] = None) -> Path:
        """Up to four images, each with its ground truth, the prediction and the skip maps (`plot_segmentation`)."""
        from ...viz import plot_segmentation

        shown, masks = inputs[:4].to(next(model.parameters()).device), targets[:4]
        if masks.shape[-2:] != shown.shape[-2:]:  # evaluation keeps labels at their size: predict at that size
            shown = F.interpolate(shown, size=masks.shape[-2:], mode="bilinear", align_corners=False)
        palette = make_palette(model.num_classes)
        return plot_segmentation(model, shown, masks, path, lambda labels: colorize(labels, palette) / 255.0,
                                 self.cfg.mean, self.cfg.std)
