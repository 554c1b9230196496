"""`dytune bench`: wall-clock inference speed of dense, AdaptFormer, DyT and ToMe models built through the method
registry (`runner`), its timing protocol (`timing`), peak memory (`memory`), the official implementation side by side
(`official`), accuracy against the compute budget (`accuracy`) and the runtimes of exported graphs (`runtimes`)."""
from .timing import Timing, time_forward, time_interleaved

__all__ = ["Timing", "time_forward", "time_interleaved"]
