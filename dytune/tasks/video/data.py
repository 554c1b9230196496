"""The video data API in one import: decoding (`decode`), temporal samplers (`samplers`), clip transforms
(`transforms`), the paper's recipes (`recipes`), the list and JSON layouts (`layouts`) and `VideoDataset`
(`datasets`); each lives in its own module, this one re-exports them."""
from __future__ import annotations

from .datasets import VideoDataset
from .decode import (BACKENDS, PyAVReader, TorchCodecReader, VideoDecodeError, VideoInfo, VideoReader,
                     available_backends, open_video)
from .decode import _import_av  # noqa: F401  (dytune.mini.minivideo reads it from here)
from .layouts import (read_classes, read_ssv2_labels, read_ssv2_split, read_video_list, read_video_list_lines,
                      ssv2_class_name)
from .recipes import VideoRecipe, kinetics_recipe, ssv2_recipe
from .samplers import DenseSampler, FrameSampler, SegmentSampler
from .transforms import (RAND_AUGMENT_OPS, CenterCrop, ClipCompose, ClipRandAugment, Normalize, RandomCrop,
                         RandomHorizontalFlip, RandomResizedCrop, ShortSideResize, SpatialCrops, ToFloat)

__all__ = [
    "BACKENDS", "VideoDecodeError", "VideoInfo", "VideoReader", "PyAVReader", "TorchCodecReader", "available_backends",
    "open_video", "FrameSampler", "DenseSampler", "SegmentSampler", "ClipCompose", "ToFloat", "Normalize",
    "ShortSideResize", "RandomCrop", "CenterCrop", "SpatialCrops", "RandomHorizontalFlip", "RandomResizedCrop",
    "ClipRandAugment", "RAND_AUGMENT_OPS", "VideoRecipe", "kinetics_recipe", "ssv2_recipe", "read_video_list",
    "read_video_list_lines", "read_classes", "read_ssv2_labels", "read_ssv2_split", "ssv2_class_name", "VideoDataset",
]
