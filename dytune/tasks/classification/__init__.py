"""The image classification task in one place: VTAB-1K lists, image folders and torchvision datasets (`data`,
`vtab`), top-k and mean per-class accuracy (`metric`), and the task (`task`)."""
from .metric import ClassificationMetric
from .task import ClassificationTask, top_classes

__all__ = ["ClassificationMetric", "ClassificationTask", "top_classes"]
