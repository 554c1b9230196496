"""mini-VTAB: seven small image tasks in the VTAB-1K layout, built offline and deterministically from real data.

Every image is a 64 x 64 RGB PNG: one or more ink sprites (handwritten digits from scikit-learn, letters rasterised
with the fonts shipped in matplotlib) composed onto a procedural textured canvas (see `dytune.mini.canvas`), so that
most patches are background, as in natural photos. As in VTAB, the tasks come in three groups:

* natural: `digits` (10 classes; test digits are other writers' images than the training ones),
  `letters` (26 capitals; test fonts are unseen in training);
* specialized: `fonts` (5 typeface families; test letters are unseen in training);
* structured: `count` (1-8 letters), `location` (horizontal position, 8 bins), `orientation` (rotation, 8 bins
  of 45 degrees), `scale` (object size, 6 log-spaced bins).

None of them is the backbone's pre-training task (Fashion-MNIST items, `dytune.mini.pretrain`). Each task folder holds
`train800.txt`, `val200.txt`, `train800val200.txt`, `test.txt` (lines `images/<split>/<index>.png <label>`),
`classes.txt` (one class name per line) and `meta.json` (settings, counts and the measured share of background
patches). A task folder is built in a temporary folder and renamed into place, so it is either complete or absent;
a rerun skips finished tasks.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .builds import build_atomically, check_built
from .canvas import contrasting_colors, paste, place_theta, textures, uniform
from ..data.sources import letter_fonts, load_digits, render_glyphs

__all__ = [
    "GROUPS", "TASKS", "MiniVTABSources", "Rendered", "background_share", "build_minivtab", "build_task", "font_family",
    "load_sources", "render_task",
]

PathLike = Union[str, os.PathLike]
FORMAT_VERSION = 1
IMG_SIZE = 64
PATCH = 8  # the mini backbone's patch size, for the background share
CONTRAST = 0.35  # texture contrast, as at the end of the backbone's pre-training curriculum
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# capitals that no rotation turns into themselves or into another capital of the set
ORIENTED_LETTERS = "ABDEFGJKLPQRTY"
FAMILIES = ("dejavu_sans", "dejavu_sans_mono", "dejavu_serif", "stix", "computer_modern")
SPLITS = ("train", "val", "test")

GROUPS: Dict[str, Tuple[str, ...]] = {
    "natural": ("digits", "letters"),
    "specialized": ("fonts",),
    "structured": ("count", "location", "orientation", "scale"),
}


def font_family(font: str) -> Optional[str]:
    """The typeface family (one of FAMILIES) of a matplotlib font file name; None for cmsy10 (calligraphic)."""
    name = Path(font).name
    for prefix, family in (("DejaVuSansMono", "dejavu_sans_mono"), ("DejaVuSans", "dejavu_sans"),
                           ("DejaVuSerif", "dejavu_serif"), ("STIX", "stix")):
        if name.startswith(prefix):
            return family
    if name.startswith("cm") and name != "cmsy10.ttf":
        return "computer_modern"
    return None


class MiniVTABSources:
    """The raw sprites of all tasks, loaded once, and their seeded fit (train + val) / test partitions.

    Args:
        seed: fixes the partitions.
    """

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        digits, digit_labels = load_digits()
        order = rng.permutation(len(digits))
        self.digits = torch.from_numpy(digits)
        self.digit_labels = torch.from_numpy(digit_labels)
        self.digit_pools = {"fit": torch.from_numpy(order[:1000]), "test": torch.from_numpy(order[1000:])}

        fonts = letter_fonts(LETTERS)
        glyphs = render_glyphs(LETTERS, fonts, size=32)
        self.glyphs = torch.from_numpy(glyphs.images)
        self.glyph_letter = torch.tensor([LETTERS.index(c) for c in glyphs.chars])
        names = [Path(f).name for f in fonts]
        family = [font_family(f) for f in glyphs.fonts]
        self.glyph_family = torch.tensor([FAMILIES.index(f) if f else -1 for f in family])
        self.glyph_font = torch.tensor([names.index(f) for f in glyphs.fonts])
        # letters: one font of each family is held out for testing
        test_fonts = [str(rng.choice(sorted(n for n in names if font_family(n) == fam))) for fam in FAMILIES]
        self.test_fonts = sorted(test_fonts)
        held_out = torch.tensor([names[i] in test_fonts for i in self.glyph_font.tolist()])
        self.letter_pools = {"fit": (~held_out).nonzero().flatten(), "test": held_out.nonzero().flatten()}
        # fonts: 8 of the 26 letters are held out for testing; cmsy10 has no family
        test_letters = sorted(rng.choice(len(LETTERS), size=8, replace=False).tolist())
        self.test_letters = "".join(LETTERS[i] for i in test_letters)
        letter_out = torch.isin(self.glyph_letter, torch.tensor(test_letters))
        has_family = self.glyph_family >= 0
        self.font_pools = {"fit": (has_family & ~letter_out).nonzero().flatten(),
                           "test": (has_family & letter_out).nonzero().flatten()}
        oriented = torch.tensor([LETTERS[i] in ORIENTED_LETTERS for i in self.glyph_letter.tolist()])
        self.oriented = oriented.nonzero().flatten()


@functools.lru_cache(maxsize=2)
def load_sources(seed: int) -> MiniVTABSources:
    """`MiniVTABSources(seed)`, cached: rasterising the glyphs takes a few seconds."""
    return MiniVTABSources(seed)


def _draw(pool: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n indices from `pool`: a random permutation, repeated (each time reshuffled) when n exceeds the pool."""
    rounds = [pool[torch.randperm(len(pool), generator=generator)] for _ in range(math.ceil(n / len(pool)))]
    return torch.cat(rounds)[:n]


@dataclass
class Rendered:
    """A batch of a task: images (n, 3, S, S) in [0, 1], labels (n,), ink coverage (n, 1, S, S)."""

    images: torch.Tensor
    labels: torch.Tensor
    coverage: torch.Tensor


def _single(canvas: torch.Tensor, sprites: torch.Tensor, side: torch.Tensor, angle: torch.Tensor,
            generator: torch.Generator, center: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Paste one sprite per canvas with the given side and rotation, at `center` or anywhere it fits."""
    n, size = canvas.shape[0], canvas.shape[-1]
    if center is None:
        reach = (size - side) / 2
        center = size / 2 + reach[:, None] * uniform(2 * n, -1, 1, generator).view(n, 2)
    color = contrasting_colors(canvas, generator)
    return paste(canvas, sprites[:, None], place_theta(center, side, angle, size), color)


def _tilt(n: int, generator: torch.Generator, degrees: float = 15.0) -> torch.Tensor:
    return uniform(n, -1, 1, generator) * math.radians(degrees)


def _classify(sprites: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
              low: float = 24.0, high: float = 44.0) -> Rendered:
    n = len(labels)
    canvas = textures(n, IMG_SIZE, generator, CONTRAST)
    image, alpha = _single(canvas, sprites, uniform(n, low, high, generator), _tilt(n, generator), generator)
    return Rendered(image, labels, alpha)


def _digits(src: MiniVTABSources, split: str, n: int, generator: torch.Generator) -> Rendered:
    idx = _draw(src.digit_pools["test" if split == "test" else "fit"], n, generator)
    return _classify(src.digits[idx], src.digit_labels[idx], generator)


def _letters(src: MiniVTABSources, split: str, n: int, generator: torch.Generator) -> Rendered:
    idx = _draw(src.letter_pools["test" if split == "test" else "fit"], n, generator)
    return _classify(src.glyphs[idx], src.glyph_letter[idx], generator)


def _fonts(src: MiniVTABSources, split: str, n: int, generator: torch.Generator) -> Rendered:
    idx = _draw(src.font_pools["test" if split == "test" else "fit"], n, generator)
    return _classify(src.glyphs[idx], src.glyph_family[idx], generator, low=32.0, high=48.0)


def _count(src: MiniVTABSources, split: str, n: int, generator: torch.Generator, cells: int = 4) -> Rendered:
    """1 to 8 small letters, each in its own cell of a 4 x 4 grid (so they never overlap), jittered in the cell."""
    counts = torch.randint(1, 9, (n,), generator=generator)
    canvas = textures(n, IMG_SIZE, generator, CONTRAST)
    coverage = torch.zeros(n, 1, IMG_SIZE, IMG_SIZE)
    cell = IMG_SIZE / cells
    # a random cell order per image; object k goes to the k-th cell and is drawn only where k < count
    order = torch.argsort(torch.rand(n, cells * cells, generator=generator), dim=1)
    for k in range(8):
        side = uniform(n, 9.0, 13.0, generator)
        row, col = order[:, k] // cells, order[:, k] % cells
        jitter = (cell - side)[:, None] / 2 * uniform(2 * n, -1, 1, generator).view(n, 2)
        center = torch.stack([col, row], 1) * cell + cell / 2 + jitter
        sprites = src.glyphs[_draw(torch.arange(len(src.glyphs)), n, generator)].float() / 255
        theta = place_theta(center, side, _tilt(n, generator), IMG_SIZE)
        canvas, alpha = paste(canvas, sprites[:, None], theta, contrasting_colors(canvas, generator),
                              mask=k < counts)
        coverage = torch.maximum(coverage, alpha)
    return Rendered(canvas, counts - 1, coverage)


def _location(src: MiniVTABSources, split: str, n: int, generator: torch.Generator, bins: int = 8,
              side: float = 12.0) -> Rendered:
    """One small letter anywhere; the label is the bin of its centre's x among `bins` equal bins."""
    canvas = textures(n, IMG_SIZE, generator, CONTRAST)
    xy = side / 2 + (IMG_SIZE - side) * torch.rand(n, 2, generator=generator)
    labels = ((xy[:, 0] - side / 2) / (IMG_SIZE - side) * bins).long().clamp(max=bins - 1)
    sprites = src.glyphs[_draw(torch.arange(len(src.glyphs)), n, generator)]
    image, alpha = _single(canvas, sprites, torch.full((n,), side), _tilt(n, generator), generator, center=xy)
    return Rendered(image, labels, alpha)


def _orientation(src: MiniVTABSources, split: str, n: int, generator: torch.Generator, bins: int = 8) -> Rendered:
    """One asymmetric letter at any rotation; the label is the rotation's bin of 360 / `bins` degrees."""
    canvas = textures(n, IMG_SIZE, generator, CONTRAST)
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    labels = (angle / (2 * math.pi) * bins).long().clamp(max=bins - 1)
    sprites = src.glyphs[_draw(src.oriented, n, generator)]
    # sides up to 32 px keep the rotated square (diagonal 1.41 x side) on the canvas
    image, alpha = _single(canvas, sprites, uniform(n, 24.0, 32.0, generator), angle, generator)
    return Rendered(image, labels, alpha)


def _scale(src: MiniVTABSources, split: str, n: int, generator: torch.Generator, bins: int = 6,
           low: float = 12.0, high: float = 48.0) -> Rendered:
    """One letter of random size; the label is the bin of log(side) among `bins` equal bins over [low, high]."""
    canvas = textures(n, IMG_SIZE, generator, CONTRAST)
    u = torch.rand(n, generator=generator)
    side = low * (high / low) ** u
    labels = (u * bins).long().clamp(max=bins - 1)
    sprites = src.glyphs[_draw(torch.arange(len(src.glyphs)), n, generator)]
    image, alpha = _single(canvas, sprites, side, _tilt(n, generator, 10.0), generator)
    return Rendered(image, labels, alpha)


@dataclass(frozen=True)
class TaskSpec:
    """A mini-VTAB task: its group, class names and renderer (sources, split, n, generator) -> Rendered."""

    group: str
    classes: Tuple[str, ...]
    render: Callable[[MiniVTABSources, str, int, torch.Generator], Rendered]
    description: str


TASKS: Dict[str, TaskSpec] = {
    "digits": TaskSpec("natural", tuple(str(i) for i in range(10)), _digits,
                       "handwritten digit (scikit-learn digits; test writers' images unseen in training)"),
    "letters": TaskSpec("natural", tuple(LETTERS), _letters,
                        "capital letter (matplotlib fonts; one font per family held out for testing)"),
    "fonts": TaskSpec("specialized", FAMILIES, _fonts, "typeface family of a capital (8 letters held out for testing)"),
    "count": TaskSpec("structured", tuple(str(i) for i in range(1, 9)), _count, "number of letters (1-8)"),
    "location": TaskSpec("structured", tuple(f"x_bin_{i}" for i in range(8)), _location,
                         "horizontal position of a 12-px letter, 8 bins"),
    "orientation": TaskSpec("structured", tuple(f"{45 * i}-{45 * (i + 1)}deg" for i in range(8)), _orientation,
                            "rotation of an asymmetric letter, 8 bins of 45 degrees"),
    "scale": TaskSpec("structured", tuple(f"size_bin_{i}" for i in range(6)), _scale,
                      "side of a letter, 6 log-spaced bins over 12-48 px"),
}


def _split_seed(seed: int, task: str, split: str) -> int:
    digest = hashlib.sha256(f"minivtab/{seed}/{task}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def render_task(task: str, split: str, n: int, seed: int = 0, sources: Optional[MiniVTABSources] = None,
                chunk: int = 250) -> Rendered:
    """Render `n` images of one split of a task (the same images `build_minivtab` writes for that seed).

    Args:
        task: a name in TASKS.
        split: train, val or test.
        n: number of images.
        seed: builder seed.
        sources: pre-loaded sources for `seed` (loaded if omitted).
        chunk: images rendered per batch.
    """
    if task not in TASKS:
        raise ValueError(f"unknown mini-VTAB task {task!r}; choose from {sorted(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    sources = sources if sources is not None else load_sources(seed)
    generator = torch.Generator().manual_seed(_split_seed(seed, task, split))
    parts = [TASKS[task].render(sources, split, min(chunk, n - i), generator) for i in range(0, n, chunk)]
    return Rendered(*(torch.cat([getattr(p, f) for p in parts]) for f in ("images", "labels", "coverage")))


def background_share(coverage: torch.Tensor, patch: int = PATCH, threshold: float = 0.02) -> float:
    """Share of patch tokens that hold no ink: the largest sprite coverage in the patch is under `threshold`."""
    ink = torch.nn.functional.max_pool2d(coverage, patch)
    return float((ink < threshold).float().mean())


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _write_list(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def build_task(root: PathLike, task: str, seed: int = 0, n_train: int = 800, n_val: int = 200, n_test: int = 1000,
               sources: Optional[MiniVTABSources] = None, progress: bool = True) -> Path:
    """Write one task folder under `root` atomically (built in a temporary folder, then renamed).

    Returns the task folder. An existing folder is kept if it was built with the same settings; otherwise a
    ValueError names it.
    """
    root = Path(root)
    folder = root / task
    settings = {"format": FORMAT_VERSION, "task": task, "seed": seed, "image_size": IMG_SIZE,
                "counts": {"train": n_train, "val": n_val, "test": n_test}}
    if folder.exists():
        check_built(folder, settings, "mini-VTAB task folder")
        return folder
    for n, name in ((n_train, "train"), (n_val, "val"), (n_test, "test")):
        if n < 1:
            raise ValueError(f"mini-VTAB {task}: the {name} split needs at least one image, got {n}")
    sources = sources if sources is not None else load_sources(seed)
    spec = TASKS[task]

    def fill(tmp: Path) -> None:
        lists: Dict[str, List[str]] = {}
        shares, label_counts = {}, {}
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            rendered = render_task(task, split, n, seed, sources)
            (tmp / "images" / split).mkdir(parents=True)
            lines = []
            for i, (pixels, label) in enumerate(tqdm(zip(_to_uint8(rendered.images), rendered.labels.tolist()),
                                                     total=n, desc=f"minivtab {task}/{split}", leave=False,
                                                     disable=not progress)):
                rel = f"images/{split}/{i:06d}.png"
                Image.fromarray(pixels, mode="RGB").save(tmp / rel, format="PNG", compress_level=6)
                lines.append(f"{rel} {label}")
            lists[split] = lines
            shares[split] = round(background_share(rendered.coverage), 4)
            label_counts[split] = torch.bincount(rendered.labels, minlength=len(spec.classes)).tolist()
        _write_list(tmp / "train800.txt", lists["train"])
        _write_list(tmp / "val200.txt", lists["val"])
        _write_list(tmp / "train800val200.txt", lists["train"] + lists["val"])
        _write_list(tmp / "test.txt", lists["test"])
        _write_list(tmp / "classes.txt", spec.classes)
        meta = {**settings, "group": spec.group, "description": spec.description, "num_classes": len(spec.classes),
                "classes": list(spec.classes), "label_counts": label_counts,
                f"background_share_patch{PATCH}": shares,
                "held_out": {"letters_test_fonts": sources.test_fonts, "fonts_test_letters": sources.test_letters}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    return build_atomically(folder, fill, settings, "mini-VTAB task folder")








def build_minivtab(root: PathLike, seed: int = 0, tasks: Optional[Sequence[str]] = None, n_train: int = 800,
                   n_val: int = 200, n_test: int = 1000, progress: bool = True) -> Dict[str, Path]:
    """Build (or complete) mini-VTAB under `root`; finished task folders are kept and skipped.

    Args:
        root: output folder, one sub-folder per task.
        seed: fixes every image and split; the same seed gives byte-identical files.
        tasks: a subset of TASKS (all by default).
        n_train, n_val, n_test: images per split (800 / 200 / 1000 as in VTAB-1K; fewer for quick tests).
        progress: show progress bars.

    Returns:
        Task name -> task folder.
    """
    tasks = list(TASKS) if tasks is None else list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown mini-VTAB task(s) {unknown}; choose from {sorted(TASKS)}")
    sources: Optional[MiniVTABSources] = None
    folders = {}
    for task in tqdm(tasks, desc="minivtab", unit="task", disable=not progress):
        if not (Path(root) / task).exists() and sources is None:
            sources = load_sources(seed)
        folders[task] = build_task(root, task, seed, n_train, n_val, n_test, sources, progress)
    return folders
