"""The paper's video recipes: the sampler and the train/test clip transforms of Kinetics-400 (`kinetics_recipe`) and
Something-Something-v2 (`ssv2_recipe`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from .samplers import DenseSampler, FrameSampler, SegmentSampler
from .transforms import (CenterCrop, ClipCompose, ClipRandAugment, Normalize, RandomCrop, RandomHorizontalFlip,
                         RandomResizedCrop, ShortSideResize, SpatialCrops, ToFloat)

__all__ = ["VideoRecipe", "kinetics_recipe", "ssv2_recipe"]


@dataclass(frozen=True)
class VideoRecipe:
    """The sampler and the train/test clip transforms of one video benchmark."""

    sampler: FrameSampler
    train_transform: ClipCompose
    test_transform: ClipCompose

    @property
    def test_views(self) -> int:
        """Views per test video: temporal x spatial."""
        return self.sampler.num_views * self.test_transform.num_views


def kinetics_recipe(img_size: int = 224, num_frames: int = 8, stride: int = 16, test_views: int = 3,
                    jitter: float = 1.15, flip: float = 0.5, mean: Sequence[float] = (0.5, 0.5, 0.5),
                    std: Sequence[float] = (0.5, 0.5, 0.5), antialias: bool = True) -> VideoRecipe:
    """Kinetics-400 as in the official code: dense frames; training short-side jitter in [img_size,
    round(img_size * jitter)] (224..258) + random crop + flip; test short side -> img_size + centre crop,
    `test_views` temporal x 1 spatial views.

    Args:
        img_size: Crop side (224; smaller for small inputs).
        num_frames: Frames per clip.
        stride: Frame stride.
        test_views: Temporal views at test.
        jitter: Top of the short-side range as a multiple of img_size.
        flip: Mirror probability in training.
        mean, std: Normalisation.
        antialias: Low-pass before downscaling.
    """
    norm = Normalize(mean, std)
    train = ClipCompose([ToFloat(), ShortSideResize((img_size, round(img_size * jitter)), antialias),
                         RandomCrop(img_size), RandomHorizontalFlip(flip), norm])
    test = ClipCompose([ToFloat(), ShortSideResize(img_size, antialias), CenterCrop(img_size), norm])
    return VideoRecipe(DenseSampler(num_frames, stride, test_views), train, test)


def ssv2_recipe(img_size: int = 224, num_segments: int = 8, test_crops: int = 3,
                rand_augment: Optional[ClipRandAugment] = None, scale: Tuple[float, float] = (0.08, 1.0),
                mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                antialias: bool = True) -> VideoRecipe:
    """Something-Something-v2 as in the official code: TSN segments; training RandAugment (same ops for all frames)
    + random-resized-crop, no flip; test short side -> img_size, `test_crops` spatial x 1 temporal views.

    Args:
        img_size: Crop side.
        num_segments: Frames per clip.
        test_crops: Spatial views at test.
        rand_augment: The augmentation; `ClipRandAugment()` (m7, n4, std 0.5) by default.
        scale: Area range of the random-resized-crop.
        mean, std: Normalisation.
        antialias: Low-pass before downscaling.
    """
    norm = Normalize(mean, std)
    augment = rand_augment if rand_augment is not None else ClipRandAugment()
    train = ClipCompose([augment, ToFloat(), RandomResizedCrop(img_size, scale, antialias=antialias), norm])
    test = ClipCompose([ToFloat(), ShortSideResize(img_size, antialias), SpatialCrops(img_size, test_crops), norm])
    return VideoRecipe(SegmentSampler(num_segments, 1), train, test)
