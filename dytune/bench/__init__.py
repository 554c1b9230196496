"""Wall-clock measurement of inference speed."""
from .timing import Timing, time_forward, time_interleaved

__all__ = ["Timing", "time_forward", "time_interleaved"]
