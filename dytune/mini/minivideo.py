"""mini-video: two small video tasks in the Kinetics and Something-Something-v2 layouts, built offline with PyAV.

Every clip is a real video file, 64 x 64 pixels, 16 frames at 16 fps: one geometric shape moving on a procedural
textured background (`dytune.mini.canvas`), so that most patches are background, as in natural videos.

* `shapes_motion` (Kinetics layout, mp4 / H.264 with B-frames): 16 classes "<shape> <motion>", shape in circle,
  square, triangle, star and motion in bounce, orbit, pulse, blink. Appearance and the kind of motion decide the
  class; the time-reversed clip keeps it, so an order-blind model can solve it.
* `motion_order` (Something-Something-v2 layout, webm / VP9): 8 classes decided by the order of the frames:
  moving left to right / right to left, up / down, turning clockwise / counterclockwise, closer / away. The
  time-reversed clip of each class is a clip of its partner class (`REVERSED`), so a model blind to frame order
  cannot beat 50 % within a pair.

Splits: 800 train, 200 val, 1000 test clips per task by default. `shapes_motion/` holds `videos/<class>/<split>_<i>.mp4`
(class names contain spaces, as in Kinetics), the lists `train800.txt`, `val200.txt`, `train800val200.txt`,
`test.txt` (`<relative path> <label>`) and `classes.txt`. `motion_order/` holds `videos/<id>.webm`,
`something-something-v2-labels.json` and `something-something-v2-{train,validation,test}.json` (the test JSON is
labelled, unlike the official one). Both have a `meta.json`. A task folder is built in a temporary folder and
renamed into place, so it is complete or absent; a rerun skips finished tasks. A seed fixes every file byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from .builds import build_atomically, check_built
from .canvas import contrasting_colors, paste, place_theta, textures, uniform

__all__ = [
    "CODECS", "FRAMES", "FPS", "IMG_SIZE", "REVERSED", "SHAPES", "TASKS", "RenderedClips", "VideoTaskSpec",
    "build_minivideo", "build_task", "render_clips", "shape_sprites", "write_video",
]

PathLike = Union[str, os.PathLike]
FORMAT_VERSION = 1
IMG_SIZE = 64
FRAMES = 16
FPS = 16
CONTRAST = 0.35
SPLITS = ("train", "val", "test")
CHUNK = 50  # clips rendered per batch; part of the format (it fixes the random stream)
SPRITE = 32
SHAPES = ("circle", "square", "triangle", "star", "pacman", "arrow", "half_disc", "kite")
ASYMMETRIC = ("pacman", "arrow", "half_disc", "kite")  # no rotation maps them onto themselves
MOTIONS = ("bounce", "orbit", "pulse", "blink")
ORDER_TEMPLATES = (
    "Moving [something] from left to right", "Moving [something] from right to left",
    "Moving [something] up", "Moving [something] down",
    "Turning [something] clockwise", "Turning [something] counterclockwise",
    "Moving [something] closer to the camera", "Moving [something] away from the camera",
)
REVERSED = (1, 0, 3, 2, 5, 4, 7, 6)
"""motion_order: the class of a clip played backwards."""

# codec name -> (container suffix, codec options); one thread each, so the bytes do not depend on the machine
CODECS: Dict[str, Tuple[str, Dict[str, str]]] = {
    "h264": (".mp4", {"preset": "medium", "crf": "18", "threads": "1"}),
    "mpeg4": (".mp4", {"qscale": "3", "threads": "1"}),
    "vp9": (".webm", {"deadline": "good", "cpu-used": "4", "crf": "24", "b": "0", "threads": "1", "row-mt": "0"}),
    "vp8": (".webm", {"deadline": "good", "cpu-used": "4", "crf": "10", "b": "1M", "threads": "1"}),
}
_ENCODERS = {"h264": "libx264", "mpeg4": "mpeg4", "vp9": "libvpx-vp9", "vp8": "libvpx"}


def write_video(path: PathLike, frames: Union[np.ndarray, torch.Tensor], codec: str = "h264", fps: int = FPS,
                gop: int = 8) -> Path:
    """Encode uint8 frames [T, H, W, 3] (even H and W) into a video file with PyAV.

    Args:
        path: Output file; its suffix should match the codec's container (.mp4 for h264/mpeg4, .webm for vp8/vp9).
        frames: The frames.
        codec: One of CODECS.
        fps: Frame rate.
        gop: Key-frame interval in frames.
    """
    from ..tasks.video.data import _import_av

    av = _import_av()
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r}: expected one of {', '.join(CODECS)}")
    frames = frames.numpy() if torch.is_tensor(frames) else np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"write_video: expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    path = Path(path)
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:  # no random ids or dates
        stream = container.add_stream(_ENCODERS[codec], rate=fps, options=dict(CODECS[codec][1]))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _polygon(draw: ImageDraw.ImageDraw, points: Sequence[Tuple[float, float]], scale: float) -> None:
    draw.polygon([(scale * (1 + x), scale * (1 - y)) for x, y in points], fill=255)


def shape_sprites(size: int = SPRITE, supersample: int = 4) -> torch.Tensor:
    """Ink masks of SHAPES, uint8 [len(SHAPES), size, size], antialiased; shapes point right / up at angle 0."""
    big = size * supersample
    half = big / 2
    sprites = []
    for name in SHAPES:
        image = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(image)
        r = 0.82 * half
        box = [half - r, half - r, half + r, half + r]
        if name == "circle":
            draw.ellipse(box, fill=255)
        elif name == "square":
            _polygon(draw, [(-0.62, -0.62), (0.62, -0.62), (0.62, 0.62), (-0.62, 0.62)], half)
        elif name == "triangle":
            _polygon(draw, [(0.85 * math.cos(a), 0.85 * math.sin(a)) for a in (math.pi / 2, 7 * math.pi / 6,
                                                                               11 * math.pi / 6)], half)
        elif name == "star":
            _polygon(draw, [((0.88 if k % 2 == 0 else 0.38) * math.cos(math.pi / 2 + k * math.pi / 5),
                             (0.88 if k % 2 == 0 else 0.38) * math.sin(math.pi / 2 + k * math.pi / 5))
                            for k in range(10)], half)
        elif name == "pacman":
            draw.pieslice(box, start=35, end=325, fill=255)  # mouth facing right
        elif name == "arrow":
            _polygon(draw, [(-0.85, 0.2), (0.1, 0.2), (0.1, 0.6), (0.88, 0.0), (0.1, -0.6), (0.1, -0.2),
                            (-0.85, -0.2)], half)
        elif name == "half_disc":
            draw.pieslice(box, start=180, end=360, fill=255)  # the upper half
        elif name == "kite":
            _polygon(draw, [(0.9, 0.0), (0.0, 0.5), (-0.6, 0.0), (0.0, -0.3)], half)
        sprites.append(np.asarray(image.resize((size, size), Image.BOX)))
    return torch.from_numpy(np.stack(sprites))


@dataclass
class RenderedClips:
    """A batch of clips: frames uint8 [n, T, H, W, 3], labels [n], and the object's trajectory per frame: centre
    [n, T, 2] (x, y in pixels, y down), side [n, T] (pixels), angle [n, T] (radians, counter-clockwise), visible
    [n, T] (bool), shape index into SHAPES [n]."""

    frames: torch.Tensor
    labels: torch.Tensor
    center: torch.Tensor
    side: torch.Tensor
    angle: torch.Tensor
    visible: torch.Tensor
    shape: torch.Tensor


def _compose(center: torch.Tensor, side: torch.Tensor, angle: torch.Tensor, visible: torch.Tensor,
             shape: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Paste each clip's shape along its trajectory onto one textured background per clip: uint8 [n, T, H, W, 3]."""
    n, t = side.shape
    canvas = textures(n, IMG_SIZE, generator, CONTRAST)
    color = contrasting_colors(canvas, generator)
    sprites = shape_sprites()[shape].float().div(255)
    frames = canvas[:, None].expand(n, t, *canvas.shape[1:]).reshape(n * t, 3, IMG_SIZE, IMG_SIZE)
    theta = place_theta(center.reshape(-1, 2), side.reshape(-1), angle.reshape(-1), IMG_SIZE)
    out, _ = paste(frames, sprites.repeat_interleave(t, 0)[:, None], theta, color.repeat_interleave(t, 0),
                   mask=visible.reshape(-1))
    out = out.clamp(0, 1).mul(255).round().to(torch.uint8)
    return out.view(n, t, 3, IMG_SIZE, IMG_SIZE).permute(0, 1, 3, 4, 2).contiguous()


def _shapes_motion(labels: torch.Tensor, generator: torch.Generator, frames: int) -> RenderedClips:
    n = len(labels)
    shape, motion = labels // len(MOTIONS), labels % len(MOTIONS)
    t = torch.arange(frames, dtype=torch.float32)[None]
    phase = uniform(n, 0, 2 * math.pi, generator)[:, None]
    period = uniform(n, 5.0, 9.0, generator)[:, None]
    base = uniform(n, 14.0, 20.0, generator)[:, None]
    angle = uniform(n, 0, 2 * math.pi, generator)[:, None].expand(n, frames).clone()
    # bounce: hops of `amp` pixels above a floor, one hop per `period` frames
    amp = uniform(n, 16.0, 24.0, generator)[:, None]
    floor = base / 2 + 2 + amp + uniform(n, 0, 1, generator)[:, None] * (IMG_SIZE - 4 - base - amp)
    bx = base / 2 + 2 + uniform(n, 0, 1, generator)[:, None] * (IMG_SIZE - 4 - base)
    bounce = torch.stack([bx.expand(n, frames), floor - amp * torch.sin(math.pi * t / period + phase).abs()], -1)
    # orbit: a circle of radius 10-14 px around a point near the centre, either direction
    radius = uniform(n, 10.0, 14.0, generator)[:, None]
    direction = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)[:, None]
    hub = IMG_SIZE / 2 + uniform(2 * n, -4.0, 4.0, generator).view(n, 1, 2)
    turn = direction * 2 * math.pi * t / (period + 4) + phase
    orbit = hub + radius[..., None] * torch.stack([torch.cos(turn), torch.sin(turn)], -1)
    # pulse and blink stay in place
    reach = base[..., None] * 0.7 + 2  # half the largest pulse, plus a margin
    still = reach + uniform(2 * n, 0, 1, generator).view(n, 1, 2) * (IMG_SIZE - 2 * reach)
    still = still.expand(n, frames, 2)
    center = torch.where((motion == 0)[:, None, None], bounce, torch.where((motion == 1)[:, None, None], orbit, still))
    pulse = base * (1 + 0.4 * torch.sin(2 * math.pi * t / period + phase))
    side = torch.where((motion == 2)[:, None], pulse, base.expand(n, frames))
    visible = torch.where((motion == 3)[:, None], torch.sin(2 * math.pi * t / period + phase) > -0.2,
                          torch.ones(n, frames, dtype=torch.bool))
    frames_u8 = _compose(center, side, angle, visible, shape, generator)
    return RenderedClips(frames_u8, labels, center, side, angle, visible, shape)


def _motion_order(labels: torch.Tensor, generator: torch.Generator, frames: int) -> RenderedClips:
    n = len(labels)
    shape = torch.tensor([SHAPES.index(s) for s in ASYMMETRIC])[torch.randint(0, len(ASYMMETRIC), (n,),
                                                                              generator=generator)]
    u = torch.linspace(0, 1, frames)[None]
    kind, backwards = labels // 2, (labels % 2 == 1)[:, None]
    progress = torch.where(backwards, 1 - u, u)  # every class runs its partner's trajectory backwards
    # translation: 22-32 px along the axis, up to 3 px of drift across it
    side_move = uniform(n, 12.0, 18.0, generator)[:, None]
    travel = uniform(n, 22.0, 32.0, generator)[:, None]
    start = side_move / 2 + 2 + uniform(n, 0, 1, generator)[:, None] * (IMG_SIZE - 4 - side_move - travel)
    across = side_move / 2 + 2 + uniform(n, 0, 1, generator)[:, None] * (IMG_SIZE - 4 - side_move)
    drift = uniform(n, -3.0, 3.0, generator)[:, None]
    along = start + travel * progress
    # left to right: x grows; "up" (kind 1, forwards) runs y from high to low
    horizontal = torch.stack([along, (across + drift * u).clamp(8, IMG_SIZE - 8)], -1)
    vertical = torch.stack([(across + drift * u).clamp(8, IMG_SIZE - 8), IMG_SIZE - along], -1)
    # rotation and scaling stay in place
    spin = uniform(n, 2 * math.pi / 3, math.pi, generator)[:, None]
    base_angle = uniform(n, 0, 2 * math.pi, generator)[:, None]
    small = uniform(n, 10.0, 13.0, generator)[:, None]
    growth = uniform(n, 1.9, 2.5, generator)[:, None]
    side_spin = uniform(n, 18.0, 24.0, generator)[:, None]
    largest = torch.where((kind == 3)[:, None], small * growth, side_spin)
    hub = largest / 2 + 2 + uniform(2 * n, 0, 1, generator).view(n, 2) * (IMG_SIZE - 4 - largest)
    hub = hub[:, None, :].expand(n, frames, 2)
    k = kind[:, None, None]
    center = torch.where(k == 0, horizontal, torch.where(k == 1, vertical, hub))
    kk = kind[:, None]
    # clockwise on screen is a decreasing counter-clockwise angle
    angle = torch.where(kk == 2, base_angle - spin * progress, base_angle.expand(n, frames))
    side = torch.where(kk == 3, small * growth ** progress,
                       torch.where(kk == 2, side_spin, side_move).expand(n, frames))
    visible = torch.ones(n, frames, dtype=torch.bool)
    frames_u8 = _compose(center, side, angle, visible, shape, generator)
    return RenderedClips(frames_u8, labels, center, side, angle, visible, shape)


@dataclass(frozen=True)
class VideoTaskSpec:
    """A mini-video task: layout, codec, class names, renderer (labels, generator, frames) -> RenderedClips."""

    layout: str
    codec: str
    classes: Tuple[str, ...]
    render: Callable[[torch.Tensor, torch.Generator, int], RenderedClips]
    description: str
    templates: Tuple[str, ...] = field(default=())


TASKS: Dict[str, VideoTaskSpec] = {
    "shapes_motion": VideoTaskSpec(
        "kinetics", "h264", tuple(f"{s} {m}" for s in SHAPES[:4] for m in MOTIONS), _shapes_motion,
        "which shape (circle, square, triangle, star) does what (bounce, orbit, pulse, blink); order-invariant"),
    "motion_order": VideoTaskSpec(
        "ssv2", "vp9", tuple(t.replace("[", "").replace("]", "") for t in ORDER_TEMPLATES), _motion_order,
        "direction of motion, sense of rotation, approaching or receding; reversing a clip changes its class",
        templates=ORDER_TEMPLATES),
}


def _split_seed(seed: int, task: str, split: str) -> int:
    digest = hashlib.sha256(f"minivideo/{seed}/{task}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def render_clips(task: str, split: str, n: int, seed: int = 0, frames: int = FRAMES,
                 start: int = 0) -> RenderedClips:
    """Render clips `start .. start + n` of one split (the pixels `build_minivideo` encodes for that seed).

    Args:
        task: A name in TASKS.
        split: train, val or test.
        n: Number of clips.
        seed: Builder seed.
        frames: Frames per clip.
        start: First clip; a multiple of the rendering chunk (50).

    Clip k of a split is the same whatever the split's size.
    """
    if task not in TASKS:
        raise ValueError(f"unknown mini-video task {task!r}; choose from {sorted(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    if start % CHUNK:
        raise ValueError(f"render_clips(start={start}): expected a multiple of {CHUNK}")
    parts = [part for offset, part in _chunks(task, split, start + n, seed, frames) if offset >= start]
    return RenderedClips(*(torch.cat([getattr(p, f) for p in parts]) for f in RenderedClips.__dataclass_fields__))


def _slice(clips: RenderedClips, n: int) -> RenderedClips:
    return RenderedClips(*(getattr(clips, f)[:n] for f in RenderedClips.__dataclass_fields__))


def _chunks(task: str, split: str, n: int, seed: int, frames: int) -> Iterator[Tuple[int, RenderedClips]]:
    """(offset, clips) in batches of CHUNK; whole batches are always drawn, so clip k does not depend on n.

    Labels come in blocks of one random permutation of the classes each, so every split is balanced to one clip.
    """
    spec = TASKS[task]
    k = len(spec.classes)
    batches = math.ceil(n / CHUNK)
    order = torch.Generator().manual_seed(_split_seed(seed, task, split + "/labels"))
    labels = torch.cat([torch.randperm(k, generator=order) for _ in range(math.ceil(batches * CHUNK / k))])
    generator = torch.Generator().manual_seed(_split_seed(seed, task, split))
    for b in range(batches):
        offset = b * CHUNK
        yield offset, _slice(spec.render(labels[offset:offset + CHUNK], generator, frames), n - offset)


def _write_kinetics(tmp: Path, task: str, spec: VideoTaskSpec, counts: Mapping[str, int], seed: int, frames: int,
                    progress: bool) -> Dict[str, List[int]]:
    lists: Dict[str, List[str]] = {}
    labels_per_split = {}
    suffix = CODECS[spec.codec][0]
    for split in SPLITS:
        lines, labels = [], []
        bar = tqdm(total=counts[split], desc=f"minivideo {task}/{split}", unit="clip", leave=False,
                   disable=not progress)
        for offset, part in _chunks(task, split, counts[split], seed, frames):
            for j, (clip, label) in enumerate(zip(part.frames, part.labels.tolist())):
                rel = f"videos/{spec.classes[label]}/{split}_{offset + j:04d}{suffix}"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                write_video(tmp / rel, clip, spec.codec)
                lines.append(f"{rel} {label}")
                labels.append(label)
                bar.update()
        bar.close()
        lists[split], labels_per_split[split] = lines, labels
    names = {"train": f"train{counts['train']}.txt", "val": f"val{counts['val']}.txt", "test": "test.txt"}
    for split, name in names.items():
        (tmp / name).write_text("".join(line + "\n" for line in lists[split]))
    (tmp / f"train{counts['train']}val{counts['val']}.txt").write_text(
        "".join(line + "\n" for line in lists["train"] + lists["val"]))
    (tmp / "classes.txt").write_text("".join(c + "\n" for c in spec.classes))
    return labels_per_split


def _write_ssv2(tmp: Path, task: str, spec: VideoTaskSpec, counts: Mapping[str, int], seed: int, frames: int,
                progress: bool) -> Dict[str, List[int]]:
    (tmp / "videos").mkdir(parents=True)
    labels_per_split = {}
    next_id = 1
    suffix = CODECS[spec.codec][0]
    for split, json_name in zip(SPLITS, ("train", "validation", "test")):
        entries, labels = [], []
        bar = tqdm(total=counts[split], desc=f"minivideo {task}/{split}", unit="clip", leave=False,
                   disable=not progress)
        for _, part in _chunks(task, split, counts[split], seed, frames):
            for clip, label, shape in zip(part.frames, part.labels.tolist(), part.shape.tolist()):
                vid = str(next_id)
                next_id += 1
                write_video(tmp / "videos" / f"{vid}{suffix}", clip, spec.codec)
                template = spec.templates[label]
                entries.append({"id": vid, "label": template.replace("[something]", SHAPES[shape].replace("_", " ")),
                                "template": template, "placeholders": [SHAPES[shape].replace("_", " ")]})
                labels.append(label)
                bar.update()
        bar.close()
        text = "[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n"  # one video per line
        (tmp / f"something-something-v2-{json_name}.json").write_text(text)
        labels_per_split[split] = labels
    label_map = {name: str(i) for i, name in enumerate(spec.classes)}
    (tmp / "something-something-v2-labels.json").write_text(json.dumps(label_map, indent=1) + "\n")
    return labels_per_split


def build_task(root: PathLike, task: str, seed: int = 0, n_train: int = 800, n_val: int = 200, n_test: int = 1000,
               frames: int = FRAMES, progress: bool = True) -> Path:
    """Write one task folder under `root` atomically (built in a temporary folder, then renamed).

    Returns the task folder. An existing folder is kept if it was built with the same settings; otherwise a
    ValueError names it.

    Args:
        root: Output folder.
        task: A name in TASKS.
        seed: Fixes every clip.
        n_train, n_val, n_test: Clips per split.
        frames: Frames per clip (>= 8).
        progress: Progress bars.
    """
    if task not in TASKS:
        raise ValueError(f"unknown mini-video task {task!r}; choose from {sorted(TASKS)}")
    spec = TASKS[task]
    root = Path(root)
    folder = root / task
    counts = {"train": n_train, "val": n_val, "test": n_test}
    settings = {"format": FORMAT_VERSION, "task": task, "seed": seed, "image_size": IMG_SIZE, "frames": frames,
                "fps": FPS, "codec": spec.codec, "counts": counts}
    if folder.exists():
        check_built(folder, settings, "mini-video task folder")
        return folder
    for split, n in counts.items():
        if n < 1:
            raise ValueError(f"mini-video {task}: the {split} split needs at least one clip, got {n}")
    if frames < 8:
        raise ValueError(f"mini-video {task}: frames={frames}, expected at least 8")

    def fill(tmp: Path) -> None:
        writer = _write_kinetics if spec.layout == "kinetics" else _write_ssv2
        labels = writer(tmp, task, spec, counts, seed, frames, progress)
        meta = {**settings, "layout": spec.layout, "description": spec.description,
                "num_classes": len(spec.classes), "classes": list(spec.classes),
                "label_counts": {s: np.bincount(labels[s], minlength=len(spec.classes)).tolist() for s in SPLITS}}
        if spec.templates:
            meta["reversed_class"] = list(REVERSED)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    return build_atomically(folder, fill, settings, "mini-video task folder")








def build_minivideo(root: PathLike, seed: int = 0, tasks: Optional[Sequence[str]] = None, n_train: int = 800,
                    n_val: int = 200, n_test: int = 1000, frames: int = FRAMES,
                    progress: bool = True) -> Dict[str, Path]:
    """Build (or complete) mini-video under `root`; finished task folders are kept and skipped.

    Args:
        root: Output folder, one sub-folder per task.
        seed: Fixes every clip and split; the same seed gives byte-identical files.
        tasks: A subset of TASKS (all by default).
        n_train, n_val, n_test: Clips per split.
        frames: Frames per clip.
        progress: Progress bars.

    Returns:
        Task name -> task folder.
    """
    tasks = list(TASKS) if tasks is None else list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown mini-video task(s) {unknown}; choose from {sorted(TASKS)}")
    return {task: build_task(root, task, seed, n_train, n_val, n_test, frames, progress) for task in tasks}
