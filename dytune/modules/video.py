"""Deprecated alias: the video model moved to `dytune.tasks.video.model` (`from dytune.tasks.video import
VideoClassifier`)."""
import warnings

from ..tasks.video.model import *  # noqa: F401,F403
from ..tasks.video.model import __all__  # noqa: F401

warnings.warn("dytune.modules.video moved to dytune.tasks.video.model; import VideoClassifier from dytune.tasks.video",
              DeprecationWarning, stacklevel=2)
