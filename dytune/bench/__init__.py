"""Wall-clock measurement of inference speed."""
from .timing import Timing, time_forward

__all__ = ["Timing", "time_forward"]
