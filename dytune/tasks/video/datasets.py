"""`VideoDataset`: labelled videos decoded, sampled and transformed into training clips [T, C, H, W] or test views
[V, T, C, H, W]; `from_list` reads the Kinetics layout, `from_ssv2` the Something-Something-v2 one."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from .decode import PathLike, VideoDecodeError, VideoInfo, open_video
from .layouts import read_classes, read_ssv2_labels, read_ssv2_split, read_video_list_lines
from .samplers import FrameSampler
from .transforms import ClipCompose, Normalize, ToFloat

__all__ = ["VideoDataset"]


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
