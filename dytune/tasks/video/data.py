"""Video data: frame-exact decoding, temporal samplers, clip transforms and the Kinetics / Something-Something layouts.

* Decoding: `open_video(path)` returns a `VideoReader` (PyAV, or torchcodec when it imports) that decodes only the
  frames asked for, seeking to the nearest key frame before each, as uint8 [T, H, W, 3].
* Samplers map a video's frame count to the frame indices of a clip: `DenseSampler` (Kinetics: 8 frames at stride
  16, random start in training, evenly spaced temporal views at test) and `SegmentSampler` (Something-Something /
  TSN: one frame per segment, random in training, the segment midpoint at test).
* Clip transforms act on a whole clip [T, C, H, W] at once, so every frame gets the same crop, flip and augmentation;
  `kinetics_recipe` and `ssv2_recipe` assemble the samplers and transforms of the paper's video recipes.
* `VideoDataset.from_list` reads the Kinetics layout (`<relative path> <label>` lines), `VideoDataset.from_ssv2`
  the Something-Something-v2 JSON files. Training items are (clip [T, C, H, W], label), test items
  (views [V, T, C, H, W], label).
"""
from __future__ import annotations

import bisect
import functools
import json
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

__all__ = [
    "BACKENDS", "VideoDecodeError", "VideoInfo", "VideoReader", "PyAVReader", "TorchCodecReader", "available_backends",
    "open_video", "FrameSampler", "DenseSampler", "SegmentSampler", "ClipCompose", "ToFloat", "Normalize",
    "ShortSideResize", "RandomCrop", "CenterCrop", "SpatialCrops", "RandomHorizontalFlip", "RandomResizedCrop",
    "ClipRandAugment", "RAND_AUGMENT_OPS", "VideoRecipe", "kinetics_recipe", "ssv2_recipe", "read_video_list",
    "read_video_list_lines", "read_classes", "read_ssv2_labels", "read_ssv2_split", "ssv2_class_name", "VideoDataset",
]

PathLike = Union[str, os.PathLike]
BACKENDS = ("pyav", "torchcodec")


# ----------------------------------------------------------------------------------------------------------- decoding

class VideoDecodeError(ValueError):
    """A video file that cannot be used: no video stream, truncated, or undecodable. The message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about a video without decoding it."""

    num_frames: int
    height: int
    width: int
    fps: Optional[float]


class VideoReader(ABC):
    """An open video file that returns the frames asked for; use it as a context manager.

    Args:
        path: The video file.
    """

    backend: str = ""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: video not found")

    @property
    @abstractmethod
    def info(self) -> VideoInfo:
        """Frame count, size and frame rate."""

    @property
    def num_frames(self) -> int:
        return self.info.num_frames

    @abstractmethod
    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """The frames at `indices` (any order, repeats allowed) as uint8 [len(indices), H, W, 3]."""

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check_indices(self, indices: Sequence[int]) -> List[int]:
        out = [int(i) for i in indices]
        bad = [i for i in out if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f"{self.path}: frame index {bad[0]} is outside 0..{self.num_frames - 1}")
        return out


def _import_av() -> Any:
    try:
        import av
    except ImportError:
        raise ImportError("video decoding needs PyAV: pip install 'dytune[video]' (or pip install 'av>=15')") from None
    return av


class _SeekMiss(Exception):
    """Seeking did not land on or before the frame wanted: fall back to decoding from the start."""


class PyAVReader(VideoReader):
    """Frame-exact decoding with PyAV (FFmpeg bundled in the wheel).

    Opening demuxes the packets once, without decoding, to map presentation timestamps to frame indices and to find
    the key frames. `get_frames` then seeks to the last key frame before each wanted frame when that skips decoding,
    and decodes forward from there. Files without usable timestamps are decoded from the start.

    Args:
        path: The video file.
        threads: Decoder threads (1 suits data-loader workers; 0 lets FFmpeg choose).
        seek: Seek to key frames; False decodes every frame from the start (slower, for checking).
    """

    backend = "pyav"

    def __init__(self, path: PathLike, threads: int = 1, seek: bool = True) -> None:
        super().__init__(path)
        self._av = _import_av()
        self.threads, self.seek = threads, seek
        self._container = self._open()
        try:
            self._build_index()
        except BaseException:
            self.close()
            raise

    def _open(self) -> Any:
        av = self._av
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except av.FFmpegError as e:
            raise VideoDecodeError(f"{self.path}: cannot open video ({e})") from e
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            container.close()
            raise VideoDecodeError(f"{self.path}: no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = self.threads
        if self.threads != 1:
            stream.thread_type = "AUTO"
        self._stream = stream
        return container

    def _build_index(self) -> None:
        stream = self._stream
        stamps: List[Optional[int]] = []
        keys: List[int] = []
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0:
                    continue
                pts = packet.pts if packet.pts is not None else packet.dts
                stamps.append(pts)
                if packet.is_keyframe and pts is not None:
                    keys.append(pts)
        except self._av.FFmpegError as e:
            raise VideoDecodeError(f"{self.path}: truncated or corrupt after {len(stamps)} packets ({e})") from e
        if not stamps:
            raise VideoDecodeError(f"{self.path}: the video stream has no frames")
        declared = stream.frames
        if declared and len(stamps) < declared:
            raise VideoDecodeError(f"{self.path}: truncated: the header declares {declared} frames, "
                                   f"the file holds {len(stamps)}")
        self._timestamps_ok = None not in stamps and len(set(stamps)) == len(stamps)
        if self._timestamps_ok:
            self._pts = sorted(stamps)  # presentation order
            self._index_of = {p: i for i, p in enumerate(self._pts)}
            self._keys = sorted({self._index_of[p] for p in keys}) or [0]
            self._check_duration()
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        self._info = VideoInfo(len(stamps), int(ctx.height), int(ctx.width), float(rate) if rate else None)

    def _check_duration(self) -> None:
        """Catch files cut short whose header still declares the full duration (e.g. WebM)."""
        stream, tb = self._stream, self._stream.time_base
        rate = stream.average_rate or stream.guessed_rate
        if tb is None or not rate:
            return
        if stream.duration:
            declared = float(stream.duration * tb)
        elif self._container.duration:
            declared = self._container.duration / 1e6
        else:
            return
        start = self._pts[0]
        _check_span(self.path, declared, float((self._pts[-1] - start) * tb) + 1 / float(rate), float(rate))

    @property
    def info(self) -> VideoInfo:
        return self._info

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None

    def _decoded(self) -> Iterator[Any]:
        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    yield frame
        except self._av.FFmpegError as e:
            raise VideoDecodeError(f"{self.path}: cannot decode ({e})") from e

    def _array(self, frame: Any) -> np.ndarray:
        return frame.to_ndarray(format="rgb24", width=self._info.width, height=self._info.height)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        if self._container is None:
            raise ValueError(f"{self.path}: the reader is closed")
        order = self._check_indices(indices)
        wanted = sorted(set(order))
        got: Dict[int, np.ndarray] = {}
        if self.seek and self._timestamps_ok:
            try:
                self._decode_seeking(wanted, got)
            except _SeekMiss:
                got.clear()
                self._decode_from_start(wanted, got)
        else:
            self._decode_from_start(wanted, got)
        missing = [i for i in wanted if i not in got]
        if missing:
            raise VideoDecodeError(f"{self.path}: frame {missing[0]} of {self.num_frames} could not be decoded "
                                   f"(truncated or corrupt stream)")
        return torch.from_numpy(np.stack([got[i] for i in order]))

    def _decode_seeking(self, wanted: List[int], got: Dict[int, np.ndarray]) -> None:
        wanted_set = set(wanted)
        frames: Optional[Iterator[Any]] = None
        position = -1  # index of the last frame decoded since the last seek
        for target in wanted:
            if target in got:
                continue
            key = self._keys[bisect.bisect_right(self._keys, target) - 1] if self._keys[0] <= target else 0
            fresh = frames is None or key > position + 1
            if fresh:
                self._container.seek(self._pts[key], stream=self._stream, backward=True, any_frame=False)
                frames = self._decoded()
            for frame in frames:
                index = self._index_of.get(frame.pts)
                if index is None or (fresh and index > target):
                    raise _SeekMiss
                fresh = False
                position = index
                if index in wanted_set and index not in got:
                    got[index] = self._array(frame)
                if index >= target:
                    break
            else:
                return

    def _decode_from_start(self, wanted: List[int], got: Dict[int, np.ndarray]) -> None:
        self._container.close()
        self._container = self._open()
        last = wanted[-1]
        wanted_set = set(wanted)
        for index, frame in enumerate(self._decoded()):
            if index in wanted_set:
                got[index] = self._array(frame)
            if index >= last:
                break


def _check_span(path: Path, declared: float, found: float, fps: float) -> None:
    """Raise when the frames found span clearly less than the header's duration (a file cut short whose header still
    declares the full length, e.g. WebM), allowing 10 % and two frames of slack."""
    if found < 0.9 * declared - 2 / fps:
        raise VideoDecodeError(f"{path}: truncated: the header declares {declared:.2f} s, the frames found span "
                               f"{found:.2f} s")


class TorchCodecReader(VideoReader):
    """Frame-exact decoding with torchcodec (needs FFmpeg libraries on the system and a matching torch build).

    Args:
        path: The video file.
        threads: FFmpeg decoder threads (1 suits data-loader workers; 0 lets FFmpeg choose).
    """

    backend = "torchcodec"

    def __init__(self, path: PathLike, threads: int = 1) -> None:
        super().__init__(path)
        from torchcodec.decoders import VideoDecoder

        try:
            self._decoder = VideoDecoder(str(self.path), seek_mode="exact", dimension_order="NHWC",
                                         num_ffmpeg_threads=threads)
        except (RuntimeError, ValueError) as e:
            raise VideoDecodeError(f"{self.path}: cannot open video ({e})") from e
        meta = self._decoder.metadata
        if not meta.num_frames:
            raise VideoDecodeError(f"{self.path}: the video stream has no frames")
        declared = meta.duration_seconds_from_header or self._container_duration()
        if declared and meta.average_fps:  # the exact scan counts the frames that are there, not the declared ones
            _check_span(self.path, declared, meta.end_stream_seconds - meta.begin_stream_seconds, meta.average_fps)
        self._info = VideoInfo(int(meta.num_frames), int(meta.height), int(meta.width),
                               float(meta.average_fps) if meta.average_fps else None)

    def _container_duration(self) -> Optional[float]:
        """The container header's duration in seconds (WebM declares none per stream); torchcodec 0.17 exposes it
        only in its private core module, so None where that is missing."""
        try:
            from torchcodec._core import get_container_metadata

            return get_container_metadata(self._decoder._decoder).duration_seconds_from_header
        except (ImportError, AttributeError):
            return None

    @property
    def info(self) -> VideoInfo:
        return self._info

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        order = self._check_indices(indices)
        try:
            return self._decoder.get_frames_at(indices=order).data
        except (RuntimeError, ValueError) as e:
            raise VideoDecodeError(f"{self.path}: cannot decode frames {order[:8]} ({e})") from e


@functools.lru_cache(maxsize=None)
def available_backends() -> Tuple[str, ...]:
    """The decoding backends that import here, fastest first."""
    found = []
    try:
        import torchcodec.decoders  # noqa: F401

        found.append("torchcodec")
    except Exception:  # ImportError, or OSError/RuntimeError when its FFmpeg libraries are missing
        pass
    try:
        import av  # noqa: F401

        found.append("pyav")
    except ImportError:
        pass
    return tuple(found)


def open_video(path: PathLike, backend: str = "auto", threads: int = 1) -> VideoReader:
    """Open a video for frame-exact decoding.

    Args:
        path: The video file.
        backend: "pyav", "torchcodec", or "auto" (torchcodec when it imports, else PyAV).
        threads: Decoder threads.
    """
    if backend not in ("auto",) + BACKENDS:
        raise ValueError(f"video backend {backend!r}: expected 'auto' or one of {', '.join(BACKENDS)}")
    found = available_backends()
    if backend == "auto":
        backend = found[0] if found else "pyav"
    elif backend not in found:
        hint = "pip install 'av>=15'" if backend == "pyav" else "pip install torchcodec (needs FFmpeg libraries)"
        raise ImportError(f"video backend {backend!r} does not import here: {hint}")
    if backend == "torchcodec":
        return TorchCodecReader(path, threads=threads)
    return PyAVReader(path, threads=threads)


# ----------------------------------------------------------------------------------------------------------- samplers

def _randint(low: int, high: int, rng: Optional[torch.Generator]) -> int:
    """A uniform integer in [low, high]."""
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
            start = _randint(0, slide, rng)
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
            return [_randint(a, b, rng) for a, b in bounds]
        # integer arithmetic: a + floor((b - a) * (view + 1/2) / num_views), i.e. (a + b) // 2 for one view
        return [a + (b - a) * (2 * view + 1) // (2 * self.num_views) for a, b in bounds]

    def __repr__(self) -> str:
        return f"SegmentSampler(num_segments={self.num_frames}, num_views={self.num_views})"


# ------------------------------------------------------------------------------------------------------ clip transforms
# A clip is a tensor [T, C, H, W] (uint8 or float); after SpatialCrops it is [S, T, C, H, W]. Every random choice is
# drawn once per call from torch's global generator, so all frames of a clip get the same crop, flip and augmentation.

class ClipCompose:
    """Apply clip transforms in order.

    Args:
        steps: Callables clip -> clip.
    """

    def __init__(self, steps: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.steps = list(steps)

    @property
    def num_views(self) -> int:
        """Spatial views the transform makes of one clip (SpatialCrops)."""
        return math.prod(getattr(step, "num_views", 1) for step in self.steps)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            clip = step(clip)
        return clip

    def __repr__(self) -> str:
        return "ClipCompose(\n" + "".join(f"    {step!r},\n" for step in self.steps) + ")"


class ToFloat:
    """uint8 0..255 -> float32 0..1."""

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return clip.float().div_(255) if clip.dtype == torch.uint8 else clip.float()

    def __repr__(self) -> str:
        return "ToFloat()"


class Normalize:
    """(clip - mean) / std per channel (channel axis -3).

    Args:
        mean: Per-channel means.
        std: Per-channel standard deviations.
    """

    def __init__(self, mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5)) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.dtype == torch.uint8:
            raise TypeError("Normalize: expected a float clip; put ToFloat() before it")
        mean = torch.tensor(self.mean, dtype=clip.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=clip.dtype).view(-1, 1, 1)
        return (clip - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def _resize(clip: torch.Tensor, size: Tuple[int, int], antialias: bool) -> torch.Tensor:
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    lead = clip.shape[:-3]
    x = clip.reshape(-1, *clip.shape[-3:])
    out = F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False, antialias=antialias)
    if clip.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out.reshape(*lead, *out.shape[-3:])


class ShortSideResize:
    """Resize (bicubic) so the short side is `size`, keeping the aspect ratio; a (low, high) pair draws the side
    uniformly from the integers in [low, high] per clip (short-side jitter).

    Args:
        size: The short side, or its (low, high) range.
        antialias: Low-pass before downscaling (the official code does not; it matters for small inputs).
    """

    def __init__(self, size: Union[int, Tuple[int, int]], antialias: bool = True) -> None:
        low, high = (size, size) if isinstance(size, int) else tuple(size)
        if not 1 <= low <= high:
            raise ValueError(f"ShortSideResize(size={size!r}): expected a side >= 1 or a range low <= high")
        self.low, self.high, self.antialias = int(low), int(high), antialias

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        side = self.low if self.low == self.high else _randint(self.low, self.high, None)
        h, w = clip.shape[-2:]
        size = (side, max(1, round(w * side / h))) if h <= w else (max(1, round(h * side / w)), side)
        return _resize(clip, size, self.antialias)

    def __repr__(self) -> str:
        size = self.low if self.low == self.high else (self.low, self.high)
        return f"ShortSideResize(size={size}, antialias={self.antialias})"


def _check_fits(clip: torch.Tensor, size: int, name: str) -> None:
    h, w = clip.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"{name}({size}): the clip is {h}x{w}, smaller than the crop; resize it first")


class RandomCrop:
    """A random `size` x `size` window, the same for every frame.

    Args:
        size: Crop side.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        _check_fits(clip, self.size, "RandomCrop")
        h, w = clip.shape[-2:]
        top, left = _randint(0, h - self.size, None), _randint(0, w - self.size, None)
        return clip[..., top:top + self.size, left:left + self.size]

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class CenterCrop:
    """The central `size` x `size` window.

    Args:
        size: Crop side.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        _check_fits(clip, self.size, "CenterCrop")
        h, w = clip.shape[-2:]
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return clip[..., top:top + self.size, left:left + self.size]

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class SpatialCrops:
    """`num_views` square windows along the long side, evenly from its start to its end (3: start, centre, end):
    [T, C, H, W] -> [num_views, T, C, size, size].

    Args:
        size: Crop side.
        num_views: Number of windows.
    """

    def __init__(self, size: int, num_views: int = 3) -> None:
        if num_views < 1:
            raise ValueError(f"SpatialCrops(num_views={num_views}): expected an integer >= 1")
        self.size, self.num_views = size, num_views

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        _check_fits(clip, self.size, "SpatialCrops")
        h, w = clip.shape[-2:]
        crops = []
        for v in range(self.num_views):
            frac = 0.5 if self.num_views == 1 else v / (self.num_views - 1)
            top = round((h - self.size) * (frac if h > w else 0.5))
            left = round((w - self.size) * (frac if w >= h else 0.5))
            crops.append(clip[..., top:top + self.size, left:left + self.size])
        return torch.stack(crops)

    def __repr__(self) -> str:
        return f"SpatialCrops({self.size}, num_views={self.num_views})"


class RandomHorizontalFlip:
    """Mirror the whole clip with probability `p`.

    Args:
        p: Flip probability.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return clip.flip(-1) if torch.rand(()).item() < self.p else clip

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomResizedCrop:
    """A random window of `scale` x the area and aspect ratio in `ratio` (log-uniform), resized to `size` x `size`
    (bicubic); after `attempts` failed draws, the largest central window within `ratio`.

    Args:
        size: Output side.
        scale: Range of the window's share of the frame area.
        ratio: Range of the window's aspect ratio (width / height).
        attempts: Draws before the central fallback.
        antialias: Low-pass before downscaling.
    """

    def __init__(self, size: int, scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10, antialias: bool = True) -> None:
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)
        self.attempts, self.antialias = attempts, antialias

    def window(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """(top, left, h, w) of one draw."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(self.attempts):
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(()).item())
            aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * torch.rand(()).item())
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return _randint(0, height - h, None), _randint(0, width - w, None), h, w
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            h, w = height, round(height * self.ratio[1])
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        top, left, h, w = self.window(*clip.shape[-2:])
        return _resize(clip[..., top:top + h, left:left + w], (self.size, self.size), self.antialias)

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"


def _enhance(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> Callable[..., torch.Tensor]:
    """An enhancement op whose factor is 1 +- 0.9 x level (timm's "increasing" colour, contrast, ...)."""
    return lambda clip, level, sign, fill: fn(clip, max(0.0, 1.0 + sign * 0.9 * level))


def _solarize_add(clip: torch.Tensor, level: float, sign: float, fill: int) -> torch.Tensor:
    added = (clip.int() + int(110 * level)).clamp_(max=255).to(clip.dtype)
    return torch.where(clip < 128, added, clip)


def _solarize(clip: torch.Tensor, level: float, sign: float, fill: int) -> torch.Tensor:
    threshold = 256 - int(256 * level)
    return clip if threshold > 255 else TF.solarize(clip, threshold)


def _rotate(clip: torch.Tensor, level: float, sign: float, fill: int) -> torch.Tensor:
    return TF.rotate(clip, sign * 30.0 * level, interpolation=InterpolationMode.BILINEAR, fill=fill)


def _affine(clip: torch.Tensor, fill: int, translate: Sequence[float] = (0.0, 0.0),
            shear: Sequence[float] = (0.0, 0.0)) -> torch.Tensor:
    return TF.affine(clip, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear),
                     interpolation=InterpolationMode.BILINEAR, fill=fill)


def _shear(axis: int) -> Callable[..., torch.Tensor]:
    def op(clip: torch.Tensor, level: float, sign: float, fill: int) -> torch.Tensor:
        degrees = math.degrees(math.atan(sign * 0.3 * level))
        return _affine(clip, fill, shear=(degrees, 0.0) if axis == 0 else (0.0, degrees))
    return op


def _translate(axis: int) -> Callable[..., torch.Tensor]:
    def op(clip: torch.Tensor, level: float, sign: float, fill: int) -> torch.Tensor:
        shift = sign * 0.45 * level * clip.shape[-1 - axis]
        return _affine(clip, fill, translate=(shift, 0.0) if axis == 0 else (0.0, shift))
    return op


# name -> op(clip uint8 [..., C, H, W], level in [0, 1], sign in {-1, 1}, fill): timm's "increasing" RandAugment set
RAND_AUGMENT_OPS: Dict[str, Callable[..., torch.Tensor]] = {
    "AutoContrast": lambda clip, level, sign, fill: TF.autocontrast(clip),
    "Equalize": lambda clip, level, sign, fill: TF.equalize(clip),
    "Invert": lambda clip, level, sign, fill: TF.invert(clip),
    "Rotate": _rotate,
    "PosterizeIncreasing": lambda clip, level, sign, fill: TF.posterize(clip, 4 - int(4 * level)),
    "SolarizeIncreasing": _solarize,
    "SolarizeAdd": _solarize_add,
    "ColorIncreasing": _enhance(TF.adjust_saturation),
    "ContrastIncreasing": _enhance(TF.adjust_contrast),
    "BrightnessIncreasing": _enhance(TF.adjust_brightness),
    "SharpnessIncreasing": _enhance(TF.adjust_sharpness),
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateXRel": _translate(0),
    "TranslateYRel": _translate(1),
}


class ClipRandAugment:
    """RandAugment with the same ops and magnitudes for every frame of a clip (timm's `rand-m7-n4-mstd0.5-inc1`).

    Each call draws `num_ops` ops uniformly with replacement; each is applied with probability `prob` at a magnitude
    drawn from N(magnitude, magnitude_std) clipped to [0, magnitude_max], with a random sign where the op has one.
    Geometric ops interpolate bilinearly (bicubic is not available for tensors) and fill with `fill`.

    Args:
        num_ops: Ops per clip.
        magnitude: Mean magnitude on the 0..magnitude_max scale.
        magnitude_std: Standard deviation of the magnitude (0: fixed).
        prob: Probability of applying each drawn op.
        magnitude_max: Top of the magnitude scale.
        fill: Grey level of pixels uncovered by geometric ops.
        ops: Op names from RAND_AUGMENT_OPS (all 15 by default).
    """

    def __init__(self, num_ops: int = 4, magnitude: float = 7.0, magnitude_std: float = 0.5, prob: float = 0.5,
                 magnitude_max: float = 10.0, fill: int = 128, ops: Optional[Sequence[str]] = None) -> None:
        self.ops = list(RAND_AUGMENT_OPS) if ops is None else list(ops)
        unknown = [op for op in self.ops if op not in RAND_AUGMENT_OPS]
        if unknown or not self.ops:
            raise ValueError(f"ClipRandAugment(ops={ops!r}): unknown op(s) {unknown}; "
                             f"choose from {', '.join(RAND_AUGMENT_OPS)}")
        self.num_ops, self.magnitude, self.magnitude_std = num_ops, magnitude, magnitude_std
        self.prob, self.magnitude_max, self.fill = prob, magnitude_max, fill

    def draw(self) -> List[Tuple[str, float, float]]:
        """The (op, level in [0, 1], sign) applied by one call; ops skipped by `prob` are left out."""
        chosen = []
        for i in torch.randint(len(self.ops), (self.num_ops,)).tolist():
            if torch.rand(()).item() >= self.prob:
                continue
            m = self.magnitude
            if self.magnitude_std > 0:
                m += self.magnitude_std * torch.randn(()).item()
            level = min(max(m, 0.0), self.magnitude_max) / self.magnitude_max
            sign = -1.0 if torch.rand(()).item() < 0.5 else 1.0
            chosen.append((self.ops[i], level, sign))
        return chosen

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.dtype != torch.uint8:
            raise TypeError("ClipRandAugment: expected a uint8 clip (raw frames, before ToFloat)")
        for name, level, sign in self.draw():
            clip = RAND_AUGMENT_OPS[name](clip, level, sign, self.fill)
        return clip

    def __repr__(self) -> str:
        return (f"ClipRandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, "
                f"magnitude_std={self.magnitude_std}, prob={self.prob})")


@dataclass(frozen=True)
class VideoRecipe:
    """The sampler and the train/test clip transforms of one video benchmark."""

    sampler: FrameSampler
    train_transform: ClipCompose
    test_transform: ClipCompose

    @property
    def test_views(self) -> int:
        """Views per test video: temporal x spatial."""
        return self.sampler.num_views * self.test_transform.num_views


def kinetics_recipe(img_size: int = 224, num_frames: int = 8, stride: int = 16, test_views: int = 3,
                    jitter: float = 1.15, flip: float = 0.5, mean: Sequence[float] = (0.5, 0.5, 0.5),
                    std: Sequence[float] = (0.5, 0.5, 0.5), antialias: bool = True) -> VideoRecipe:
    """Kinetics-400 as in the official code: dense frames; training short-side jitter in [img_size,
    round(img_size * jitter)] (224..258) + random crop + flip; test short side -> img_size + centre crop,
    `test_views` temporal x 1 spatial views.

    Args:
        img_size: Crop side (224; smaller for small inputs).
        num_frames: Frames per clip.
        stride: Frame stride.
        test_views: Temporal views at test.
        jitter: Top of the short-side range as a multiple of img_size.
        flip: Mirror probability in training.
        mean, std: Normalisation.
        antialias: Low-pass before downscaling.
    """
    norm = Normalize(mean, std)
    train = ClipCompose([ToFloat(), ShortSideResize((img_size, round(img_size * jitter)), antialias),
                         RandomCrop(img_size), RandomHorizontalFlip(flip), norm])
    test = ClipCompose([ToFloat(), ShortSideResize(img_size, antialias), CenterCrop(img_size), norm])
    return VideoRecipe(DenseSampler(num_frames, stride, test_views), train, test)


def ssv2_recipe(img_size: int = 224, num_segments: int = 8, test_crops: int = 3,
                rand_augment: Optional[ClipRandAugment] = None, scale: Tuple[float, float] = (0.08, 1.0),
                mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                antialias: bool = True) -> VideoRecipe:
    """Something-Something-v2 as in the official code: TSN segments; training RandAugment (same ops for all frames)
    + random-resized-crop, no flip; test short side -> img_size, `test_crops` spatial x 1 temporal views.

    Args:
        img_size: Crop side.
        num_segments: Frames per clip.
        test_crops: Spatial views at test.
        rand_augment: The augmentation; `ClipRandAugment()` (m7, n4, std 0.5) by default.
        scale: Area range of the random-resized-crop.
        mean, std: Normalisation.
        antialias: Low-pass before downscaling.
    """
    norm = Normalize(mean, std)
    augment = rand_augment if rand_augment is not None else ClipRandAugment()
    train = ClipCompose([augment, ToFloat(), RandomResizedCrop(img_size, scale, antialias=antialias), norm])
    test = ClipCompose([ToFloat(), ShortSideResize(img_size, antialias), SpatialCrops(img_size, test_crops), norm])
    return VideoRecipe(SegmentSampler(num_segments, 1), train, test)


# ---------------------------------------------------------------------------------------------------- list/JSON files

def read_video_list(list_file: PathLike, num_classes: Optional[int] = None) -> List[Tuple[str, int]]:
    """Parse `<relative video path> <label>` lines (split on the last whitespace: paths may hold spaces).

    Args:
        list_file: The list file.
        num_classes: Labels must lie in [0, num_classes).
    """
    return [(path, label) for _, path, label in read_video_list_lines(list_file, num_classes)]


def read_video_list_lines(list_file: PathLike, num_classes: Optional[int] = None) -> List[Tuple[int, str, int]]:
    """(line number, relative video path, label) of each `<relative video path> <label>` line.

    Args:
        list_file: The list file.
        num_classes: Labels must lie in [0, num_classes).
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: list file not found")
    samples = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{list_file}:{number}: expected '<video path> <integer label>', got {line!r}")
        label = int(parts[1])
        if label < 0 or (num_classes is not None and label >= num_classes):
            top = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
            raise ValueError(f"{list_file}:{number}: label {label} is outside {top}")
        samples.append((number, parts[0], label))
    if not samples:
        raise ValueError(f"{list_file}: the list is empty")
    return samples


def read_classes(path: PathLike) -> List[str]:
    """Class names, one per line (a `classes.txt`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class-name file not found")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: no class names")
    return names


def _load_json(path: Path, what: str) -> Tuple[Any, str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    text = path.read_text()
    try:
        return json.loads(text), text
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def ssv2_class_name(template: str) -> str:
    """The class of a Something-Something template: its brackets removed ("Moving [something] up" -> "Moving
    something up")."""
    return template.replace("[", "").replace("]", "")


def read_ssv2_labels(labels_file: PathLike) -> List[str]:
    """Class names ordered by id from `something-something-v2-labels.json` ({name: "id"}); ids must be 0..K-1."""
    labels_file = Path(labels_file)
    data, text = _load_json(labels_file, "Something-Something labels file")
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{labels_file}: expected a non-empty JSON object {{class name: id}}")
    names: Dict[int, str] = {}
    for name, value in data.items():
        line = _line_at(text, max(text.find(json.dumps(name)), 0))
        if not str(value).isdigit():
            raise ValueError(f"{labels_file}:{line}: class {name!r} has id {value!r}, expected an integer")
        if int(value) in names:
            raise ValueError(f"{labels_file}:{line}: classes {names[int(value)]!r} and {name!r} share id {value}")
        names[int(value)] = name
    if sorted(names) != list(range(len(names))):
        gap = min(set(range(len(names))) - set(names))
        raise ValueError(f"{labels_file}: class ids must be 0..{len(names) - 1}; id {gap} is missing")
    return [names[i] for i in range(len(names))]


def _json_array(path: Path, text: str) -> Iterator[Tuple[int, Any]]:
    """The elements of a top-level JSON array (already known to be valid JSON) with the line each starts on."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text[pos:pos + 1] == "[":
        raise ValueError(f"{path}:{_line_at(text, pos)}: expected a JSON array of videos")
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        yield _line_at(text, pos), item
        pos = end


def read_ssv2_split(split_file: PathLike, classes: Sequence[str], video_ext: str = ".webm") -> List[Tuple[str, int]]:
    """(`<id><video_ext>`, label) of a Something-Something train/validation JSON ([{"id", "template", ...}]).

    Args:
        split_file: The split's JSON file.
        classes: Class names in id order (`read_ssv2_labels`); each template, brackets removed, must be one of them.
        video_ext: File extension of the videos.
    """
    split_file = Path(split_file)
    _, text = _load_json(split_file, "Something-Something split file")
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for line, item in _json_array(split_file, text):
        if not isinstance(item, dict) or "id" not in item:
            raise ValueError(f"{split_file}:{line}: expected an object with 'id' and 'template', got {item!r:.80}")
        if "template" not in item:
            raise ValueError(f"{split_file}:{line}: video {item['id']} has no 'template' (an unlabelled test split?)")
        name = ssv2_class_name(str(item["template"]))
        if name not in index:
            raise ValueError(f"{split_file}:{line}: video {item['id']}: template {item['template']!r} -> "
                             f"{name!r} is not a class of the labels file ({len(classes)} classes)")
        samples.append((f"{item['id']}{video_ext}", index[name]))
    if not samples:
        raise ValueError(f"{split_file}: the split is empty")
    return samples


# ------------------------------------------------------------------------------------------------------------ dataset

class VideoDataset(Dataset):
    """Labelled videos under `root`: decode, sample and transform one clip (training) or all test views.

    Training items are (clip float [T, C, H, W], label); test items (views float [V, T, C, H, W], label) with
    V = sampler.num_views x transform.num_views, temporal views outermost. Videos shorter than the sampler's span
    repeat frames. `frame_counts` records each video's length once it is opened, by the probe (`probe()`, run at
    construction when `skip_bad_videos` or `cache`) or by loading in any DataLoader worker (shared memory), so
    `padded_clips` and `short_videos` list the short videos seen so far in the main process too.

    Args:
        root: Folder the video paths are relative to.
        samples: (relative path, label) pairs.
        classes: Class names; labels index them.
        sampler: Frame sampler.
        transform: Clip transform on uint8 [T, C, H, W]; ToFloat + Normalize(0.5, 0.5) if None.
        train: Random training clips, or the deterministic test views.
        backend: Decoding backend ("auto", "pyav", "torchcodec").
        threads: Decoder threads per video.
        cache: Decode every video completely once, at construction, and keep the frames in memory (small sets only).
        skip_bad_videos: Drop missing, truncated or undecodable videos (messages in `skipped`) instead of failing.
        probe: Open every video at construction (frame counts in `info`); default: when cache or skip_bad_videos.
        source: The list/JSON file(s) the samples came from, for messages.
        origins: Where each sample was read (e.g. "train.txt:3"), for messages; `label_origin` names it.
        progress: Progress bar while probing or caching.
    """

    def __init__(self, root: PathLike, samples: Sequence[Tuple[str, int]], classes: Sequence[str],
                 sampler: FrameSampler, transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 train: bool = False, *, backend: str = "auto", threads: int = 1, cache: bool = False,
                 skip_bad_videos: bool = False, probe: Optional[bool] = None, source: Optional[str] = None,
                 origins: Optional[Sequence[str]] = None, progress: bool = False) -> None:
        self.root = Path(root)
        self.classes = list(classes)
        self.sampler, self.train = sampler, train
        self.transform = transform if transform is not None else ClipCompose([ToFloat(), Normalize()])
        self.backend, self.threads = backend, threads
        self.skip_bad_videos = skip_bad_videos
        self.source = source or str(self.root)
        self.skipped: List[str] = []
        self.info: Optional[List[VideoInfo]] = None
        self._cache: Optional[List[torch.Tensor]] = None
        samples = [(str(p), int(label)) for p, label in samples]
        if not samples:
            raise ValueError(f"{self.source}: no videos")
        if origins is not None and len(origins) != len(samples):
            raise ValueError(f"{self.source}: {len(origins)} origins for {len(samples)} videos")
        self.origins = list(origins) if origins is not None else [f"{self.source}: video {i}" for i in
                                                                    range(len(samples))]
        for i, (path, label) in enumerate(samples):
            if not 0 <= label < len(self.classes):
                raise ValueError(f"{self.source}: video {i} ({path}) has label {label}, outside "
                                 f"0..{len(self.classes) - 1} ({len(self.classes)} classes)")
        if not skip_bad_videos:
            missing = [p for p, _ in samples if not (self.root / p).is_file()]
            if missing:
                raise FileNotFoundError(f"{self.source}: {len(missing)} listed video(s) not found under {self.root}, "
                                        f"e.g. {missing[0]} (use skip_bad_videos to skip them)")
        self.samples = samples
        self.frame_counts = torch.zeros(len(samples), dtype=torch.int64).share_memory_()  # 0: not opened yet
        if probe if probe is not None else (cache or skip_bad_videos):
            self.probe(cache=cache, progress=progress)

    @classmethod
    def from_list(cls, root: PathLike, list_file: PathLike, sampler: FrameSampler,
                  transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, *,
                  classes: Union[Sequence[str], PathLike, int, None] = None, train: bool = False,
                  **options: Any) -> "VideoDataset":
        """The Kinetics layout: `<relative path> <label>` lines.

        Args:
            root: Folder the paths are relative to.
            list_file: The list file.
            sampler: Frame sampler.
            transform: Clip transform.
            classes: Class names, a `classes.txt` path, a class count, or None (names "0".."K-1" up to the top label).
            train: Training items or test views.
            **options: VideoDataset keyword arguments.
        """
        if isinstance(classes, (str, os.PathLike)):
            classes = read_classes(classes)
        elif isinstance(classes, int):
            classes = [str(i) for i in range(classes)]
        rows = read_video_list_lines(list_file, None if classes is None else len(classes))
        if classes is None:
            classes = [str(i) for i in range(max(label for _, _, label in rows) + 1)]
        return cls(root, [(path, label) for _, path, label in rows], classes, sampler, transform, train,
                   source=str(list_file), origins=[f"{list_file}:{number}" for number, _, _ in rows], **options)

    @classmethod
    def from_ssv2(cls, root: PathLike, split_files: Union[PathLike, Sequence[PathLike]], labels_file: PathLike,
                  sampler: FrameSampler, transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, *,
                  train: bool = False, video_ext: str = ".webm", **options: Any) -> "VideoDataset":
        """The Something-Something-v2 layout: `<id>.webm` videos, the labels JSON and one or more split JSONs.

        Args:
            root: The video folder.
            split_files: Split JSON file(s), e.g. train and validation together.
            labels_file: `something-something-v2-labels.json`.
            sampler: Frame sampler.
            transform: Clip transform.
            train: Training items or test views.
            video_ext: Video file extension.
            **options: VideoDataset keyword arguments.
        """
        files = [split_files] if isinstance(split_files, (str, os.PathLike)) else list(split_files)
        classes = read_ssv2_labels(labels_file)
        samples = [s for f in files for s in read_ssv2_split(f, classes, video_ext)]
        return cls(root, samples, classes, sampler, transform, train, source=", ".join(map(str, files)), **options)

    @property
    def targets(self) -> List[int]:
        return [label for _, label in self.samples]

    def label_origin(self, index: int) -> str:
        """Where video `index` and its label were read, e.g. "train.txt:3"."""
        return self.origins[index]

    @property
    def num_views(self) -> int:
        """Clips per item: 1 in training, temporal x spatial views at test."""
        if self.train:
            return 1
        return self.sampler.num_views * getattr(self.transform, "num_views", 1)

    @property
    def padded_clips(self) -> List[Tuple[str, int]]:
        """(path, frame count) of the videos opened so far that are shorter than the sampler needs: their clips
        repeat the last frame."""
        counts = self.frame_counts.tolist()
        return [(path, n) for (path, _), n in zip(self.samples, counts) if n and self.sampler.is_short(n)]

    @property
    def short_videos(self) -> List[str]:
        """Paths of the `padded_clips`."""
        return [path for path, _ in self.padded_clips]

    def probe(self, cache: bool = False, progress: bool = False) -> None:
        """Open every video (decoding its first and last frame, or all with `cache`): fills `info` and
        `frame_counts`; drops bad videos into `skipped` when `skip_bad_videos`, else raises naming the file."""
        kept, info, frames = [], [], []
        for index, (path, label) in enumerate(tqdm(self.samples, desc="probing videos", unit="video",
                                                   disable=not progress)):
            try:
                with open_video(self.root / path, self.backend, self.threads) as reader:
                    n = reader.num_frames
                    decoded = reader.get_frames(range(n) if cache else sorted({0, n - 1}))
                    meta = reader.info
            except (FileNotFoundError, VideoDecodeError, IndexError) as e:
                if not self.skip_bad_videos:
                    raise
                self.skipped.append(str(e))
                continue
            kept.append(index)
            info.append(meta)
            if cache:
                frames.append(decoded)
        if not kept:
            raise ValueError(f"{self.source}: no readable video left after skipping {len(self.skipped)} "
                             f"(first: {self.skipped[0] if self.skipped else '-'})")
        self.samples, self.origins = [self.samples[i] for i in kept], [self.origins[i] for i in kept]
        self.info, self._cache = info, frames if cache else None
        self.frame_counts = torch.tensor([i.num_frames for i in info], dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.samples)

    def _frames(self, index: int, pick: Callable[[int], List[List[int]]]) -> List[torch.Tensor]:
        """uint8 [T, C, H, W] clips for the index lists `pick(num_video_frames)` returns, decoded in one pass."""
        path = self.root / self.samples[index][0]
        if self._cache is not None:
            video = self._cache[index]
            return [video[idx].permute(0, 3, 1, 2) for idx in pick(len(video))]
        with open_video(path, self.backend, self.threads) as reader:
            self.frame_counts[index] = reader.num_frames
            clips = pick(reader.num_frames)
            union = sorted({i for clip in clips for i in clip})
            frames = reader.get_frames(union)
        where = {i: k for k, i in enumerate(union)}
        return [frames[[where[i] for i in clip]].permute(0, 3, 1, 2) for clip in clips]

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        label = self.samples[index][1]
        if self.train:
            clip, = self._frames(index, lambda n: [self.sampler(n, True)])
            return self.transform(clip), label
        views = []
        for clip in self._frames(index, lambda n: [self.sampler(n, False, view=v)
                                                   for v in range(self.sampler.num_views)]):
            out = self.transform(clip)
            views.append(out if out.ndim == 5 else out[None])
        return torch.cat(views), label

    def __repr__(self) -> str:
        return (f"VideoDataset({len(self)} videos, {len(self.classes)} classes, {self.sampler!r}, "
                f"train={self.train}, source={self.source!r})")
