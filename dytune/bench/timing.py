"""Timing of forward passes: warm-up, device synchronisation, median and spread over repeats."""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List

import torch

from ..utils.runtime import relative_spread, synchronize


@dataclass
class Timing:
    """Latencies of repeated forward passes over one batch."""

    batch: int
    times_ms: List[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def spread_ms(self) -> float:
        """Half the range between the fastest and slowest repeat."""
        return (max(self.times_ms) - min(self.times_ms)) / 2.0

    @property
    def images_per_s(self) -> float:
        return self.batch / (self.median_ms / 1000.0)

    def speedups_over(self, base: "Timing") -> List[float]:
        """How much faster than `base` this ran in each round (base's time / this one's), for interleaved timings
        whose rounds ran side by side."""
        return [b / t for b, t in zip(base.times_ms, self.times_ms)]

    def speedup_over(self, base: "Timing") -> float:
        """The speed-up over `base` from the median latencies."""
        return base.median_ms / self.median_ms

    def speedup_spread(self, base: "Timing") -> float:
        """How far the per-round speed-ups over `base` spread (half their range over their median)."""
        return relative_spread(self.speedups_over(base))

    def to_dict(self) -> Dict[str, float]:
        out = asdict(self)
        out.update(median_ms=self.median_ms, spread_ms=self.spread_ms, images_per_s=self.images_per_s)
        return out


@torch.inference_mode()
def time_forward(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, warmup: int = 2,
                 repeats: int = 5) -> Timing:
    """Time fn(images) `repeats` times after `warmup` untimed calls, synchronising the device around each call."""
    for _ in range(warmup):
        fn(images)
    synchronize(images.device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(images)
        synchronize(images.device)
        times.append((time.perf_counter() - start) * 1000.0)
    return Timing(batch=images.shape[0], times_ms=times)


@torch.inference_mode()
def time_interleaved(fns: Dict[str, Callable[[torch.Tensor], torch.Tensor]], images: torch.Tensor, warmup: int = 2,
                     repeats: int = 5) -> Dict[str, Timing]:
    """Time several functions on one batch, taking turns, so that a slow spell of a shared machine hits all alike.

    Each round times every function once (in order), synchronising the device around each call; `warmup` untimed
    rounds come first.

    Args:
        fns: name -> function of the batch.
        images: The batch.
        warmup: Untimed rounds.
        repeats: Timed rounds.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn(images)
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(images.device)
            start = time.perf_counter()
            fn(images)
            synchronize(images.device)
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: Timing(batch=images.shape[0], times_ms=t) for name, t in times.items()}
