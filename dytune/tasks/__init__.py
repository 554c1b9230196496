"""Tasks the engine trains and evaluates: the `Task` contract, its registry and the built-in tasks."""
from .base import TASKS, Metric, Task, build_task, register_task, task_for_dataset, unregister_task
from .classification.task import ClassificationTask
from .classification.metric import ClassificationMetric
from .segmentation.task import SegmentationTask
from .video.task import VideoTask

__all__ = ["Task", "Metric", "TASKS", "register_task", "unregister_task", "task_for_dataset", "build_task",
           "ClassificationTask", "ClassificationMetric", "SegmentationTask", "VideoTask"]
