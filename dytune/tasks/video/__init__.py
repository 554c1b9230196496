"""The video task in one place: decoding (`decode`), frame samplers (`samplers`), clip transforms (`transforms`), the
K400 and SSv2 recipes (`recipes`) and file layouts (`layouts`), `VideoDataset` (`datasets`; `data` re-exports all of
these), the frame-wise backbone with attentive pooling (`model`), and the task with its settings (`task`)."""
from .model import VideoClassifier
from .task import VideoSettings, VideoTask

__all__ = ["VideoClassifier", "VideoSettings", "VideoTask"]
