"""Build train/eval datasets and transforms from a training config."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision import transforms as T

from .vtab import vtab_dataset

# torchvision datasets of the paper: name -> (class, train kwargs, eval kwargs)
TORCHVISION = {
    "cifar100": (tvd.CIFAR100, dict(train=True), dict(train=False)),
    "svhn": (tvd.SVHN, dict(split="train"), dict(split="test")),
    "food101": (tvd.Food101, dict(split="train"), dict(split="test")),
    "fgvc_aircraft": (tvd.FGVCAircraft, dict(split="trainval"), dict(split="test")),
    "oxford_iiit_pet": (tvd.OxfordIIITPet, dict(split="trainval"), dict(split="test")),
    "stanford_cars": (tvd.StanfordCars, dict(split="train"), dict(split="test")),
    "flowers102": (tvd.Flowers102, dict(split="train"), dict(split="test")),
    "dtd": (tvd.DTD, dict(split="train"), dict(split="test")),
    "fashion_mnist": (tvd.FashionMNIST, dict(train=True), dict(train=False)),
}
SVHN_CLASSES = tuple(str(digit) for digit in range(10))  # torchvision relabels the digit 0 (stored as 10) to 0
MEAN_PER_CLASS = {"fgvc_aircraft", "oxford_iiit_pet", "flowers102"}  # the paper reports mean per-class accuracy there
DATASETS = ("vtab", "folder") + tuple(TORCHVISION)


class ToRGB:
    """Convert any PIL image (grayscale, palette, RGBA) to RGB; picklable for worker processes."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB")


class ArrayDataset(Dataset):
    """Images held in a uint8 array ([N, H, W] or [N, H, W, 3]) with integer labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: Sequence[str], transform: Callable) -> None:
        self.images, self.targets, self.classes, self.transform = images, [int(t) for t in labels], list(classes), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), self.targets[index]


def build_transform(img_size: int, augment: str, train: bool, mean: Tuple[float, ...], std: Tuple[float, ...]) -> Callable:
    """'none': resize to a square (VTAB-1K); 'rrc_flip': RandomResizedCrop + flip for training, resize + centre crop
    for evaluation (full datasets)."""
    if augment not in ("none", "rrc_flip"):
        raise ValueError(f"augment={augment!r}: expected 'none' or 'rrc_flip'")
    bicubic = T.InterpolationMode.BICUBIC
    if augment == "none":
        steps = [T.Resize((img_size, img_size), interpolation=bicubic)]
    elif train:
        steps = [T.RandomResizedCrop(img_size, interpolation=bicubic), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(int(img_size / 0.875), interpolation=bicubic), T.CenterCrop(img_size)]
    return T.Compose([ToRGB(), *steps, T.ToTensor(), T.Normalize(mean, std)])


def _labels_of(dataset: Dataset):
    """The integer labels a dataset holds (list, numpy array or tensor), or None: `targets` (CIFAR, ImageFolder),
    `labels` (SVHN, a numpy array), `_labels` (Food-101, FGVC-Aircraft, Oxford-IIIT Pet, Flowers-102, DTD) or the
    second item of `_samples` / `samples` pairs (Stanford Cars)."""
    for name in ("targets", "labels", "_labels"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            return labels
    for name in ("_samples", "samples"):
        samples = getattr(dataset, name, None)
        if samples is not None:
            return [sample[1] for sample in samples]
    return None


def num_classes_of(dataset: Dataset) -> int:
    """The class count of a dataset: the length of its `classes` when it has them, else its largest label + 1.

    Where both are known the larger wins: a class list derived from the split's own files (Oxford-IIIT Pet, DTD)
    lacks the classes that split has no image of, and the model still needs an output for every label.
    """
    classes = getattr(dataset, "classes", None)
    count = len(classes) if classes is not None else 0
    labels = _labels_of(dataset)
    if labels is not None and len(labels) > 0:
        count = max(count, int(np.max(np.asarray(labels))) + 1)
    if count == 0:
        raise ValueError(f"{type(dataset).__name__}: cannot tell its class count (no classes, targets or labels)")
    return count


def first_label_outside(dataset: Dataset, count: int) -> Optional[Tuple[str, int]]:
    """Where the first label >= `count` of `dataset` was read and the label, or None when all fit (or the labels
    are not integers): the dataset's `label_origin(index)` (e.g. "test.txt:7"), else the sample's file.

    Args:
        dataset: A classification dataset.
        count: The class count its labels must stay below.
    """
    try:
        labels = np.asarray(_labels_of(dataset), dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):  # no labels, or not integers (e.g. mask paths)
        return None
    outside = np.flatnonzero(labels >= count)
    if len(outside) == 0:
        return None
    index = int(outside[0])
    label = int(labels[index])
    if callable(getattr(dataset, "label_origin", None)):
        return dataset.label_origin(index), label
    samples = getattr(dataset, "samples", None) or getattr(dataset, "_samples", None)
    if samples is not None and isinstance(samples[index][0], (str, os.PathLike)):
        return str(samples[index][0]), label
    return f"{type(dataset).__name__} sample {index}", label


def build_dataset(cfg, train: bool) -> Dataset:
    """The train or eval dataset a `TrainConfig` names, with its transform."""
    transform = build_transform(cfg.img_size, cfg.augment, train, tuple(cfg.mean), tuple(cfg.std))
    root = Path(cfg.data_root)
    if cfg.dataset == "vtab":
        split = cfg.train_split if train else cfg.eval_split
        return vtab_dataset(root, cfg.task, split, transform, cfg.cache_images, cfg.skip_bad_images)
    if cfg.dataset == "folder":
        folder = root / ("train" if train else cfg.eval_split)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: image folder not found (expected {root}/train and {root}/{cfg.eval_split})")
        return tvd.ImageFolder(str(folder), transform=transform)
    if cfg.dataset == "fashion_mnist" and not cfg.download:  # the IDX files, e.g. from Debian's dataset-fashion-mnist
        from ...data.sources import FASHION_MNIST_CLASSES, load_fashion_mnist

        images, labels = load_fashion_mnist("train" if train else "test", cfg.data_root or None)
        return ArrayDataset(images, labels, FASHION_MNIST_CLASSES, transform)
    if cfg.dataset in TORCHVISION:
        cls, train_kwargs, eval_kwargs = TORCHVISION[cfg.dataset]
        try:
            dataset = cls(str(root), transform=transform, download=cfg.download,
                          **(train_kwargs if train else eval_kwargs))
        except RuntimeError as e:
            raise FileNotFoundError(f"{cfg.dataset} under {root}: {e} (set download=true where there is internet)") from e
        if cfg.dataset == "svhn" and getattr(dataset, "classes", None) is None:
            dataset.classes = list(SVHN_CLASSES)  # ten digits whichever the split holds; names for `dytune predict`
        return dataset
    raise ValueError(f"dataset={cfg.dataset!r}: expected one of {', '.join(DATASETS)}")
