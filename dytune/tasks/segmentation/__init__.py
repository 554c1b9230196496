"""The segmentation task in one place: ADE20K / COCO-Stuff data and transforms (`data`), the feature-pyramid neck
with UperNet and FCN heads (`model`), mIoU (`metric`), and the task with its settings (`task`)."""
from .model import Segmenter
from .task import SegmentationSettings, SegmentationTask

__all__ = ["SegmentationSettings", "SegmentationTask", "Segmenter"]
