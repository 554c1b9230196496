"""Frame-exact video decoding: `open_video(path)` returns a `VideoReader` (PyAV, or torchcodec when it imports) that
decodes only the frames asked for, seeking to the nearest key frame before each, as uint8 [T, H, W, 3]."""
from __future__ import annotations

import bisect
import functools
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["BACKENDS", "VideoDecodeError", "VideoInfo", "VideoReader", "PyAVReader", "TorchCodecReader",
           "available_backends", "open_video"]

PathLike = Union[str, os.PathLike]
BACKENDS = ("pyav", "torchcodec")


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
        # One scaling thread: DataLoader workers already run in parallel, and PyAV 18.1.1's automatic thread count
        # hangs in workers forked from a process that has converted frames before.
        return frame.to_ndarray(format="rgb24", width=self._info.width, height=self._info.height, threads=1)

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
