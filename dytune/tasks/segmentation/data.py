"""Semantic-segmentation data: ADE20K and COCO-Stuff 164k folders, and joint image + label-map transforms.

Layouts (mmsegmentation's):

* ADE20K (ADEChallengeData2016): `images/{training,validation}/*.jpg`, `annotations/{training,validation}/*.png`
  with values 0..150, 0 = unlabelled. Labels are reduced by one (`reduce_zero_label`): 0 -> 255 (ignored), k -> k-1.
* COCO-Stuff 164k: `images/{train2017,val2017}/*.jpg` and either `annotations/<split>/*_labelTrainIds.png`
  (171 train ids 0..170, 255 unlabelled; what mmseg's `coco_stuff164k.py` converter writes) or the raw
  stuffthingmaps `annotations/<split>/*.png` (ids 0..181, 255 unlabelled), mapped to the 171 train ids here.

An item is (image float32 [3, H, W] normalised, mask int64 [H, W]); `load(i)` gives the raw pair (image in 0..255)
before the transforms. The transforms take and return such pairs; `train_transforms` and `eval_transforms` build
the paper's pipelines with sizes as settings.
"""
from __future__ import annotations

import colorsys
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

__all__ = [
    "ADE20K", "ADE20K_CLASSES", "COCOStuff", "COCO_STUFF_CLASSES", "COCO_STUFF_RAW_IDS", "Compose", "Normalize",
    "Pad", "PhotoMetricDistortion", "RandomCrop", "RandomFlip", "RandomResize", "Resize", "SegmentationDataset",
    "colorize", "eval_transforms", "make_palette", "read_class_names", "train_transforms",
]

PathLike = Union[str, os.PathLike]
Pair = Tuple[torch.Tensor, torch.Tensor]
Transform = Callable[[torch.Tensor, torch.Tensor], Pair]
IGNORE_INDEX = 255

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)

COCO_STUFF_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush", "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard",
    "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone",
    "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel",
    "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud",
    "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield",
    "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other",
    "skyscraper", "snow", "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent",
    "textile-other", "towel", "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel",
    "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
# raw stuffthingmaps values (COCO category id - 1) that name no class: the 11 unused COCO thing ids
_COCO_STUFF_UNUSED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
COCO_STUFF_RAW_IDS = tuple(i for i in range(182) if i not in _COCO_STUFF_UNUSED)  # raw id of each train id


def make_palette(num_classes: int) -> np.ndarray:
    """Distinct colours (num_classes, 3) uint8: hues spaced by the golden ratio, alternating saturation and value."""
    colours = []
    for i in range(num_classes):
        hue = (0.08 + i * 0.618033988749895) % 1.0
        saturation = (0.95, 0.6, 0.8)[i % 3]
        value = (0.95, 0.7, 0.85, 0.55)[(i // 3) % 4]
        colours.append([round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value)])
    return np.asarray(colours, dtype=np.uint8).reshape(num_classes, 3)


def colorize(mask: Union[torch.Tensor, np.ndarray], palette: np.ndarray, ignore_index: int = IGNORE_INDEX,
             ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """A label map [H, W] as an RGB image [H, W, 3] uint8; `ignore_index` pixels get `ignore_color`."""
    labels = mask.cpu().numpy() if torch.is_tensor(mask) else np.asarray(mask)
    table = np.zeros((max(256, len(palette), int(labels.max(initial=0)) + 1), 3), np.uint8)
    table[:len(palette)] = palette
    table[ignore_index] = ignore_color
    return table[labels.astype(np.int64)]


def read_class_names(path: PathLike) -> Tuple[str, ...]:
    """Class names from a text file, one a line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class list not found (one class name per line)")
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names:
        raise ValueError(f"{path}: the class list is empty")
    return names


class SegmentationDataset(Dataset):
    """Images and label maps in parallel folders: `root/image_dir/<split>/<stem><image_suffix>` and
    `root/annotation_dir/<split>/<stem><annotation_suffix>`.

    Args:
        root: Data set folder.
        split: Sub-folder name (or an alias from `split_aliases`).
        classes: Class names; labels are 0..len(classes)-1 after decoding.
        transforms: (image [3, H, W] float 0..255, mask [H, W] int64) -> pair; `Normalize()` by default.
        image_dir, annotation_dir: Folders under root.
        image_suffix, annotation_suffix: File name endings.
        label_map: Raw PNG value -> label lookup (256 entries, -1 = invalid); identity on 0..K-1 and 255 by default.
        reduce_zero_label: Raw 0 -> ignore, k -> k - 1 (ADE20K); ignored when `label_map` is given.
        palette: Colours (K, 3) uint8; `make_palette(K)` by default.
        split_aliases: Split names accepted in place of the folder names.
        ignore_index: Label of unlabelled pixels.
    """

    def __init__(
            self, root: PathLike, split: str, classes: Sequence[str], transforms: Optional[Transform] = None,
            image_dir: str = "images", annotation_dir: str = "annotations", image_suffix: str = ".jpg",
            annotation_suffix: str = ".png", label_map: Optional[np.ndarray] = None, reduce_zero_label: bool = False,
            palette: Optional[np.ndarray] = None, split_aliases: Optional[Dict[str, str]] = None,
            ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.root = Path(root)
        self.split = (split_aliases or {}).get(split, split)
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.ignore_index = ignore_index
        self.palette = make_palette(self.num_classes) if palette is None else np.asarray(palette, np.uint8)
        if self.palette.shape != (self.num_classes, 3):
            raise ValueError(f"palette of shape {self.palette.shape}; expected ({self.num_classes}, 3)")
        self.transforms = transforms if transforms is not None else Normalize()
        self.label_map = self._default_map(reduce_zero_label) if label_map is None else np.asarray(label_map, np.int64)
        self.reduce_zero_label = reduce_zero_label and label_map is None
        self.files = self._pair_files(image_dir, annotation_dir, image_suffix, annotation_suffix)

    def _default_map(self, reduce_zero_label: bool) -> np.ndarray:
        table = np.full(256, -1, np.int64)
        if reduce_zero_label:
            table[0] = self.ignore_index
            table[1:self.num_classes + 1] = np.arange(self.num_classes)
        else:
            table[:self.num_classes] = np.arange(self.num_classes)
        table[self.ignore_index] = self.ignore_index
        return table

    def _pair_files(self, image_dir: str, annotation_dir: str, image_suffix: str,
                    annotation_suffix: str) -> List[Tuple[Path, Path]]:
        images = self.root / image_dir / self.split
        annotations = self.root / annotation_dir / self.split
        for folder in (images, annotations):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{folder}: folder not found; expected {self.root}/{image_dir}/{self.split}/*{image_suffix} and "
                    f"{self.root}/{annotation_dir}/{self.split}/*{annotation_suffix}")
        image_files = sorted(p for p in images.iterdir() if p.name.endswith(image_suffix))
        if not image_files:
            raise ValueError(f"{images}: no *{image_suffix} images")
        pairs = [(p, annotations / (p.name[:-len(image_suffix)] + annotation_suffix)) for p in image_files]
        missing = [(img, ann) for img, ann in pairs if not ann.is_file()]
        if missing:
            listed = "; ".join(f"{img} has no {ann}" for img, ann in missing[:3])
            raise FileNotFoundError(f"{len(missing)} of {len(pairs)} images have no annotation: {listed}"
                                    f"{' ...' if len(missing) > 3 else ''}")
        return pairs

    def __len__(self) -> int:
        return len(self.files)

    def _expected_raw(self) -> str:
        valid = np.flatnonzero(self.label_map >= 0)
        ranges, start = [], valid[0]
        for a, b in zip(valid, np.append(valid[1:], -1)):
            if b != a + 1:
                ranges.append(f"{start}" if start == a else f"{start}..{a}")
                start = b
        return ", ".join(ranges)

    def load(self, index: int) -> Pair:
        """The raw pair: image float32 [3, H, W] in 0..255 and mask int64 [H, W] (labels decoded and checked)."""
        image_path, ann_path = self.files[index]
        with Image.open(image_path) as img:
            image = np.asarray(img.convert("RGB"))
        with Image.open(ann_path) as ann:
            raw = np.asarray(ann)
            mode = ann.mode
        if raw.ndim != 2:
            raise ValueError(f"{ann_path}: a label map must have one channel (PNG mode L or P), got mode {mode} with "
                             f"shape {raw.shape}")
        if raw.shape != image.shape[:2]:
            raise ValueError(f"{ann_path} is {raw.shape[1]}x{raw.shape[0]} but its image {image_path} is "
                             f"{image.shape[1]}x{image.shape[0]} (width x height)")
        raw = raw.astype(np.int64)
        inside = (raw >= 0) & (raw < len(self.label_map))
        mask = np.where(inside, self.label_map[np.clip(raw, 0, len(self.label_map) - 1)], -1)
        if (mask < 0).any():
            bad = np.unique(raw[mask < 0])
            raise ValueError(f"{ann_path}: label values {bad[:10].tolist()}{' ...' if len(bad) > 10 else ''} are "
                             f"outside the {self.num_classes} classes; expected raw values {self._expected_raw()}")
        return (torch.from_numpy(image.copy()).permute(2, 0, 1).float(), torch.from_numpy(mask))

    def __getitem__(self, index: int) -> Pair:
        return self.transforms(*self.load(index))


class ADE20K(SegmentationDataset):
    """ADE20K (ADEChallengeData2016) layout: 150 classes, raw label 0 ignored (labels reduced by one).

    Args:
        root: The folder holding `images/` and `annotations/`.
        split: "training" or "validation" ("train" / "val" accepted).
        transforms: Pair transform; `Normalize()` by default.
        classes: Class names of another data set in this layout (ADE20K's 150 by default).
        palette: Colours (K, 3) uint8.
        image_suffix: Ending of the image files.
    """

    def __init__(self, root: PathLike, split: str = "training", transforms: Optional[Transform] = None,
                 classes: Optional[Sequence[str]] = None, palette: Optional[np.ndarray] = None,
                 image_suffix: str = ".jpg") -> None:
        super().__init__(root, split, ADE20K_CLASSES if classes is None else classes, transforms,
                         image_suffix=image_suffix, reduce_zero_label=True, palette=palette,
                         split_aliases={"train": "training", "val": "validation"})


class COCOStuff(SegmentationDataset):
    """COCO-Stuff 164k layout: 171 classes, 255 ignored.

    Args:
        root: The folder holding `images/` and `annotations/`.
        split: "train2017" or "val2017" ("train" / "val" accepted).
        transforms: Pair transform; `Normalize()` by default.
        annotations: "train_ids" (`*_labelTrainIds.png`, values 0..170), "raw" (stuffthingmaps `*.png`, values
            0..181 mapped to the train ids) or "auto" (train ids when the split has any, else raw).
    """

    def __init__(self, root: PathLike, split: str = "train2017", transforms: Optional[Transform] = None,
                 annotations: str = "auto") -> None:
        if annotations not in ("auto", "train_ids", "raw"):
            raise ValueError(f"COCOStuff annotations={annotations!r}; expected 'auto', 'train_ids' or 'raw'")
        split = {"train": "train2017", "val": "val2017"}.get(split, split)
        if annotations == "auto":
            folder = Path(root) / "annotations" / split
            has_ids = folder.is_dir() and any(p.name.endswith("_labelTrainIds.png") for p in folder.iterdir())
            annotations = "train_ids" if has_ids else "raw"
        label_map = None
        if annotations == "raw":
            label_map = np.full(256, -1, np.int64)
            label_map[list(COCO_STUFF_RAW_IDS)] = np.arange(len(COCO_STUFF_RAW_IDS))
            label_map[IGNORE_INDEX] = IGNORE_INDEX
        self.annotations = annotations
        super().__init__(root, split, COCO_STUFF_CLASSES, transforms,
                         annotation_suffix="_labelTrainIds.png" if annotations == "train_ids" else ".png",
                         label_map=label_map)


# ---------------------------------------------------------------------------------------------------------- transforms

def _rescale_factor(height: int, width: int, scale: Tuple[int, int]) -> float:
    """mmcv's keep-ratio rule: the largest factor with long side <= max(scale) and short side <= min(scale)."""
    return min(max(scale) / max(height, width), min(scale) / min(height, width))


def _resize_pair(image: torch.Tensor, mask: Optional[torch.Tensor],
                 size: Tuple[int, int]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if tuple(image.shape[-2:]) == size:
        return image, mask
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    if mask is not None:
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, mask


def _scaled_size(height: int, width: int, scale: Tuple[int, int]) -> Tuple[int, int]:
    factor = _rescale_factor(height, width, scale)
    return int(height * factor + 0.5), int(width * factor + 0.5)


class Compose:
    """Apply pair transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        for t in self.transforms:
            image, mask = t(image, mask)
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(type(t).__name__ for t in self.transforms)})"


class Resize:
    """Resize keeping the aspect ratio so that the long side <= max(scale) and the short side <= min(scale)
    (e.g. (2048, 512): short side 512 unless the long side would pass 2048).

    Args:
        scale: The two bounds.
        resize_mask: Resize the mask too (nearest); off for evaluation, where logits are resized to the label.
    """

    def __init__(self, scale: Tuple[int, int] = (2048, 512), resize_mask: bool = True) -> None:
        self.scale = scale
        self.resize_mask = resize_mask

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        size = _scaled_size(*image.shape[-2:], self.scale)
        image, resized = _resize_pair(image, mask if self.resize_mask else None, size)
        return image, resized if self.resize_mask else mask


class RandomResize:
    """`Resize` to scale * r with r ~ U(ratio_range) per call (image bilinear, mask nearest).

    Args:
        scale: The bounds at ratio 1.
        ratio_range: (low, high) of r.
    """

    def __init__(self, scale: Tuple[int, int] = (2048, 512), ratio_range: Tuple[float, float] = (0.5, 2.0)) -> None:
        self.scale = scale
        self.ratio_range = ratio_range

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        low, high = self.ratio_range
        ratio = low + (high - low) * float(torch.rand(()))
        scale = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        image, resized = _resize_pair(image, mask, _scaled_size(*image.shape[-2:], scale))
        return image, resized  # type: ignore[return-value]


class RandomCrop:
    """Random crop of `size` (smaller sides are kept whole); up to 10 draws for a crop in which no single class
    covers more than `cat_max_ratio` of the labelled pixels (mmseg's rule).

    Args:
        size: (h, w) or a side.
        cat_max_ratio: 1 disables the retries.
        ignore_index: Label not counted by the ratio.
    """

    def __init__(self, size: Union[int, Tuple[int, int]], cat_max_ratio: float = 0.75,
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index

    def _box(self, height: int, width: int) -> Tuple[int, int, int, int]:
        top = int(torch.randint(0, max(height - self.size[0], 0) + 1, ()))
        left = int(torch.randint(0, max(width - self.size[1], 0) + 1, ()))
        return top, top + min(self.size[0], height), left, left + min(self.size[1], width)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        box = self._box(*mask.shape)
        if self.cat_max_ratio < 1:
            for _ in range(10):
                labels = mask[box[0]:box[1], box[2]:box[3]]
                counts = torch.bincount(labels[labels != self.ignore_index].flatten())
                counts = counts[counts > 0]
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                box = self._box(*mask.shape)
        top, bottom, left, right = box
        return image[:, top:bottom, left:right], mask[top:bottom, left:right]


class RandomFlip:
    """Horizontal flip with probability `prob`."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        if float(torch.rand(())) < self.prob:
            return image.flip(-1), mask.flip(-1)
        return image, mask


class PhotoMetricDistortion:
    """mmseg's photometric distortion of an image in 0..255, each step with probability 0.5, clipped after each:
    brightness + U(-delta, delta); contrast * U(range) (before or after the colour steps, at random); saturation
    * U(range) in HSV; hue + U(-hue_delta, hue_delta) in OpenCV's 0..180 hue units (2 degrees each).
    """

    def __init__(self, brightness_delta: float = 32, contrast_range: Tuple[float, float] = (0.5, 1.5),
                 saturation_range: Tuple[float, float] = (0.5, 1.5), hue_delta: float = 18) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta

    @staticmethod
    def _coin() -> bool:
        return bool(torch.randint(0, 2, ()))

    @staticmethod
    def _uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(()))

    def _contrast(self, image: torch.Tensor) -> torch.Tensor:
        if self._coin():
            image = (image * self._uniform(*self.contrast_range)).clamp(0, 255)
        return image

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        import torchvision.transforms.functional as TF

        if self._coin():
            image = (image + self._uniform(-self.brightness_delta, self.brightness_delta)).clamp(0, 255)
        contrast_first = self._coin()
        if contrast_first:
            image = self._contrast(image)
        if self._coin():  # HSV saturation scaling keeps hue and value: each channel moves away from the max
            value = image.max(dim=0, keepdim=True).values
            saturation = (value - image.min(dim=0, keepdim=True).values) / value.clamp(min=1e-6)
            factor = self._uniform(*self.saturation_range)
            factor = torch.minimum(torch.full_like(saturation, factor), 1 / saturation.clamp(min=1e-6))
            image = (value - factor * (value - image)).clamp(0, 255)
        if self._coin():
            shift = self._uniform(-self.hue_delta, self.hue_delta) * 2 / 360  # OpenCV hue unit = 2 degrees
            image = TF.adjust_hue(image / 255, shift) * 255
        if not contrast_first:
            image = self._contrast(image)
        return image, mask


class Normalize:
    """Image 0..255 -> (image / 255 - mean) / std; `mean`, `std` as timm's (fractions of 1)."""

    def __init__(self, mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5)) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1) * 255

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        return (image - self.mean) / self.std, mask


class Pad:
    """Pad bottom / right to at least `size`: image with `image_value`, mask with `mask_value`."""

    def __init__(self, size: Union[int, Tuple[int, int]], image_value: float = 0.0,
                 mask_value: int = IGNORE_INDEX) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.image_value = image_value
        self.mask_value = mask_value

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        pad_h, pad_w = max(self.size[0] - image.shape[-2], 0), max(self.size[1] - image.shape[-1], 0)
        if not (pad_h or pad_w):
            return image, mask
        image = F.pad(image, (0, pad_w, 0, pad_h), value=self.image_value)
        mask = F.pad(mask, (0, pad_w, 0, pad_h), value=self.mask_value)
        return image, mask


def train_transforms(
        crop_size: Union[int, Tuple[int, int]] = 512, scale: Tuple[int, int] = (2048, 512),
        ratio_range: Tuple[float, float] = (0.5, 2.0), cat_max_ratio: float = 0.75, flip_prob: float = 0.5,
        photometric: bool = True, mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
        ignore_index: int = IGNORE_INDEX,
) -> Compose:
    """The paper's training pipeline: random resize, random crop (cat_max_ratio), flip, photometric distortion,
    normalise, pad (image 0, label `ignore_index`). For smaller images scale `crop_size` and `scale` together
    (e.g. 128 and (512, 128))."""
    steps: List[Transform] = [RandomResize(scale, ratio_range), RandomCrop(crop_size, cat_max_ratio, ignore_index),
                              RandomFlip(flip_prob)]
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += [Normalize(mean, std), Pad(crop_size, 0.0, ignore_index)]
    return Compose(steps)


def eval_transforms(scale: Tuple[int, int] = (2048, 512), mean: Sequence[float] = (0.5, 0.5, 0.5),
                    std: Sequence[float] = (0.5, 0.5, 0.5), resize_mask: bool = False) -> Compose:
    """The paper's test pipeline: keep-ratio resize of the image to `scale`, normalise. The mask stays at its size
    (resize the logits to it, e.g. `slide_inference(..., output_size=mask.shape[-2:])`) unless `resize_mask`."""
    return Compose([Resize(scale, resize_mask=resize_mask), Normalize(mean, std)])
