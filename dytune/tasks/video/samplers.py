"""Temporal samplers: a video's frame count -> the frame indices of one clip. `DenseSampler` (Kinetics: frames at a
fixed stride, random start in training, evenly spaced temporal views at test) and `SegmentSampler` (Something-
Something / TSN: one frame per segment, random in training, the segment midpoint at test); each takes its settings
as constructor arguments."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List, Optional

import torch

__all__ = ["FrameSampler", "DenseSampler", "SegmentSampler", "uniform_int"]


def uniform_int(low: int, high: int, rng: Optional[torch.Generator]) -> int:
    """A uniform integer in [low, high] (also the clip transforms' draw).

    Args:
        low, high: The inclusive range.
        rng: Source of randomness; torch's global generator if None.
    """
    return int(torch.randint(low, high + 1, (1,), generator=rng).item())


class FrameSampler(ABC):
    """Maps a video's frame count to the frame indices of one clip.

    Attributes:
        num_frames: Frames per clip.
        num_views: Temporal views per video at test time.
    """

    num_frames: int
    num_views: int

    @property
    @abstractmethod
    def min_video_frames(self) -> int:
        """Shorter videos are padded (frames repeated)."""

    def is_short(self, num_video_frames: int) -> bool:
        """Whether a video of this length gets repeated frames."""
        return num_video_frames < self.min_video_frames

    @abstractmethod
    def __call__(self, num_video_frames: int, train: bool, rng: Optional[torch.Generator] = None,
                 view: int = 0) -> List[int]:
        """Frame indices of one clip.

        Args:
            num_video_frames: Frames in the video (>= 1).
            train: Random clip (training) or the deterministic clip of test view `view`.
            rng: Source of randomness; torch's global generator if None (seeded per data-loader worker).
            view: Test view in [0, num_views).
        """

    def _check(self, num_video_frames: int, train: bool, view: int) -> None:
        if num_video_frames < 1:
            raise ValueError(f"{type(self).__name__}: the video has {num_video_frames} frames, expected at least 1")
        if not train and not 0 <= view < self.num_views:
            raise ValueError(f"{type(self).__name__}: view {view} is outside 0..{self.num_views - 1}")


class DenseSampler(FrameSampler):
    """`num_frames` frames `stride` apart (Kinetics).

    Training takes a uniformly random start; test view i of `num_views` starts at round(slide * i / (num_views - 1)),
    slide = max(num_video_frames - span, 0), so the views sit evenly from the beginning to the end (a single view is
    centred). Indices past the end repeat the last frame.

    Args:
        num_frames: Frames per clip.
        stride: Distance between consecutive frames.
        num_views: Temporal views at test time.
    """

    def __init__(self, num_frames: int = 8, stride: int = 16, num_views: int = 3) -> None:
        for name, value in (("num_frames", num_frames), ("stride", stride), ("num_views", num_views)):
            if value < 1:
                raise ValueError(f"DenseSampler({name}={value}): expected an integer >= 1")
        self.num_frames, self.stride, self.num_views = num_frames, stride, num_views

    @property
    def span(self) -> int:
        """Frames covered by one clip, first to last."""
        return (self.num_frames - 1) * self.stride + 1

    @property
    def min_video_frames(self) -> int:
        return self.span

    def __call__(self, num_video_frames: int, train: bool, rng: Optional[torch.Generator] = None,
                 view: int = 0) -> List[int]:
        self._check(num_video_frames, train, view)
        slide = max(num_video_frames - self.span, 0)
        if train:
            start = uniform_int(0, slide, rng)
        elif self.num_views == 1:
            start = round(slide / 2)
        else:
            start = round(slide * view / (self.num_views - 1))
        last = num_video_frames - 1
        return [min(start + k * self.stride, last) for k in range(self.num_frames)]

    def __repr__(self) -> str:
        return f"DenseSampler(num_frames={self.num_frames}, stride={self.stride}, num_views={self.num_views})"


class SegmentSampler(FrameSampler):
    """One frame from each of `num_segments` equal segments covering the whole video (TSN; Something-Something).

    With size = (num_video_frames - 1) / num_segments, segment i spans [round(size * i), round(size * (i + 1))].
    Training draws a uniform integer in it; test view v of `num_views` takes a + floor((b - a) * (v + 1/2) /
    num_views) of segment [a, b], i.e. the official midpoint (a + b) // 2 for one view. Videos shorter than
    `num_segments` frames repeat frames.

    Args:
        num_segments: Segments, i.e. frames per clip.
        num_views: Temporal views at test time.
    """

    def __init__(self, num_segments: int = 8, num_views: int = 1) -> None:
        for name, value in (("num_segments", num_segments), ("num_views", num_views)):
            if value < 1:
                raise ValueError(f"SegmentSampler({name}={value}): expected an integer >= 1")
        self.num_frames, self.num_views = num_segments, num_views

    @property
    def min_video_frames(self) -> int:
        return self.num_frames

    def __call__(self, num_video_frames: int, train: bool, rng: Optional[torch.Generator] = None,
                 view: int = 0) -> List[int]:
        self._check(num_video_frames, train, view)
        size = (num_video_frames - 1) / self.num_frames
        bounds = [(round(size * i), round(size * (i + 1))) for i in range(self.num_frames)]
        if train:
            return [uniform_int(a, b, rng) for a, b in bounds]
        # integer arithmetic: a + floor((b - a) * (view + 1/2) / num_views), i.e. (a + b) // 2 for one view
        return [a + (b - a) * (2 * view + 1) // (2 * self.num_views) for a, b in bounds]

    def __repr__(self) -> str:
        return f"SegmentSampler(num_segments={self.num_frames}, num_views={self.num_views})"
