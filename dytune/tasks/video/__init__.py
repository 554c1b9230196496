"""The video task in one place: decoding, frame samplers and clip transforms (`data`), the frame-wise backbone with
attentive pooling (`model`), and the task with its settings (`task`)."""
from .model import VideoClassifier
from .task import VideoSettings, VideoTask

__all__ = ["VideoClassifier", "VideoSettings", "VideoTask"]
