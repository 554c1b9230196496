"""mini-segmentation: a small offline semantic-segmentation benchmark in the ADE20K layout, built deterministically.

Each 128 x 128 image holds 1 to 4 objects on a procedural textured canvas (`dytune.mini.canvas`), one per cell of a
2 x 2 grid (jittered, so they may touch or overlap; the one drawn last is on top). The 14 object classes come from
three sources, none of them the backbone's pre-training data (Fashion-MNIST):

* geometric shapes drawn analytically with 4x supersampling (circle, rectangle, triangle, star, ring, cross), each
  instance with its own proportions;
* capital letters rasterised with the fonts that ship in matplotlib; validation uses fonts unseen in training;
* handwritten digits from scikit-learn; validation uses other images than training.

Objects are drawn at random size and rotation in a colour that stands out from the canvas. Masks are exact: a pixel
belongs to the top-most object covering at least half of it; pixels whose top-most coverage is ambiguous (strictly
between 25 % and 75 %, the anti-aliased rims) are unlabelled. As in ADE20K the PNG values are 0 = unlabelled,
1 = background, 2.. = the objects, so `MiniSeg` (= `ADE20K` with these classes) reduces them to 255 / 0 / 1...

The folder (`images/{training,validation}/*.jpg`, `annotations/{training,validation}/*.png`, `classes.txt`,
`meta.json`) is built in a temporary folder and renamed into place, so it is either complete or absent; a rerun
with the same settings keeps it. The validation split is the benchmark's test set, so a recipe search validates on
a held-out part of the training split instead: `train800` (training images 0-799) and `val200` (800-999) for the
default 1,000, hard links to the training files (`heldout_splits`); a rerun adds them to an older build.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from .builds import build_atomically, check_built
from .canvas import contrasting_colors, paste, place_theta, textures, uniform
from ..tasks.segmentation.data import ADE20K, Transform, read_class_names
from ..data.sources import letter_fonts, load_digits, render_glyphs

__all__ = ["CLASSES", "MiniSeg", "MiniSegSources", "RenderedSeg", "build_miniseg", "heldout_splits", "load_sources",
           "render_miniseg", "shape_sprites", "write_heldout_splits"]

PathLike = Union[str, os.PathLike]
FORMAT_VERSION = 1
SHAPES = ("circle", "rectangle", "triangle", "star", "ring", "cross")
LETTERS = "AEGKR"
DIGITS = (2, 4, 7)
CLASSES = ("background", *SHAPES, *(f"letter {c}" for c in LETTERS), *(f"digit {d}" for d in DIGITS))
SPLITS = ("training", "validation")
CONTRAST = 0.35
SPRITE = 32  # side of every sprite (shapes, glyphs, digits) before it is placed
UNLABELLED, BACKGROUND = 0, 1  # raw PNG values; object class c (1..14 in CLASSES) is written as c + 1
HELDOUT = 0.2  # share of the training images held out for validation (recipe search)


def _polygon_inside(x: torch.Tensor, y: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor) -> torch.Tensor:
    """Crossing-number test of points (x, y) [n, P] against polygons with vertices (vx, vy) [n, V]."""
    inside = torch.zeros_like(x, dtype=torch.bool)
    count = vx.shape[1]
    for i in range(count):
        x1, y1 = vx[:, i, None], vy[:, i, None]
        x2, y2 = vx[:, (i + 1) % count, None], vy[:, (i + 1) % count, None]
        crosses = (y1 > y) != (y2 > y)
        at = x1 + (y - y1) * (x2 - x1) / torch.where(y2 == y1, torch.full_like(y2, 1e-9), y2 - y1)
        inside ^= crosses & (x < at)
    return inside


def shape_sprites(kinds: torch.Tensor, generator: torch.Generator, side: int = SPRITE,
                  supersample: int = 4) -> torch.Tensor:
    """Anti-aliased coverage [n, side, side] in [0, 1] of geometric shapes, each with random proportions.

    Args:
        kinds: Shape of each sprite, indices into SHAPES.
        generator: Source of randomness.
        side: Sprite side in pixels.
        supersample: Sub-samples per pixel side.
    """
    n, res = len(kinds), side * supersample
    if n == 0:
        return torch.zeros(0, side, side)
    aspect = uniform(n, 0.7, 1.0, generator)[:, None]
    inner = uniform(n, 0.38, 0.55, generator)[:, None]
    width = uniform(n, 0.2, 0.3, generator)[:, None]
    jitter = uniform(3 * n, 0.82, 1.0, generator).view(n, 3)
    axis = (torch.arange(res, dtype=torch.float32) + 0.5) / res * 2 - 1
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    coverage = torch.zeros(n, res * res)
    for kind in kinds.unique().tolist():
        rows = (kinds == kind).nonzero().flatten()
        x, y = xs.flatten()[None].expand(len(rows), -1), ys.flatten()[None].expand(len(rows), -1)
        a, w = aspect[rows], width[rows]
        if SHAPES[kind] == "circle":
            inside = (x / 0.92) ** 2 + (y / (0.92 * a)) ** 2 < 1
        elif SHAPES[kind] == "rectangle":
            inside = (x.abs() < 0.85) & (y.abs() < 0.85 * a)
        elif SHAPES[kind] == "triangle":
            angle = torch.tensor([-math.pi / 2 + 2 * math.pi * k / 3 for k in range(3)])
            radius = 0.97 * jitter[rows]
            inside = _polygon_inside(x, y, radius * torch.cos(angle), radius * torch.sin(angle))
        elif SHAPES[kind] == "star":
            angle = torch.tensor([-math.pi / 2 + math.pi * k / 5 for k in range(10)])
            radius = torch.where(torch.arange(10) % 2 == 0, torch.tensor(0.97), inner[rows])
            inside = _polygon_inside(x, y, radius * torch.cos(angle), radius * torch.sin(angle))
        elif SHAPES[kind] == "ring":
            r = torch.sqrt(x ** 2 + y ** 2)
            inside = (r < 0.92) & (r > inner[rows] + 0.05)
        else:  # cross
            inside = ((x.abs() < w) & (y.abs() < 0.92)) | ((y.abs() < w) & (x.abs() < 0.92))
        coverage[rows] = inside.float()
    return F.avg_pool2d(coverage.view(n, 1, res, res), supersample)[:, 0]


class MiniSegSources:
    """The letter glyphs and digit images, split into training and validation pools.

    Args:
        seed: Fixes which fonts and digit images are held out for validation.
    """

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        fonts = letter_fonts(LETTERS)
        held_out = set(rng.choice(len(fonts), size=max(1, len(fonts) // 4), replace=False).tolist())
        self.validation_fonts = sorted(Path(fonts[i]).name for i in held_out)
        glyphs = render_glyphs(LETTERS, fonts, size=32)
        self.glyphs = torch.from_numpy(glyphs.images).float() / 255
        letter = torch.tensor([LETTERS.index(c) for c in glyphs.chars])
        val_glyph = torch.tensor([f in self.validation_fonts for f in glyphs.fonts])
        self.letter_pools = {split: [((letter == i) & (val_glyph == (split == "validation"))).nonzero().flatten()
                                     for i in range(len(LETTERS))] for split in SPLITS}
        images, labels = load_digits()
        keep = np.isin(labels, DIGITS)
        images, labels = images[keep], labels[keep]
        order = rng.permutation(len(images))
        cut = int(0.7 * len(images))
        up = F.interpolate(torch.from_numpy(images).float()[:, None] / 255, size=(32, 32), mode="bilinear",
                           align_corners=False)
        self.digits = torch.sigmoid((up[:, 0] - 0.35) * 16)  # crisp strokes: solid ink inside, a thin soft rim
        digit = torch.tensor([DIGITS.index(int(v)) for v in labels])
        pools = {"training": torch.from_numpy(order[:cut]), "validation": torch.from_numpy(order[cut:])}
        self.digit_pools = {split: [pools[split][digit[pools[split]] == i] for i in range(len(DIGITS))]
                            for split in SPLITS}


@functools.lru_cache(maxsize=2)
def load_sources(seed: int) -> MiniSegSources:
    """`MiniSegSources(seed)`, cached: rasterising the glyphs takes a few seconds."""
    return MiniSegSources(seed)


@dataclass
class RenderedSeg:
    """Images [n, 3, S, S] in [0, 1] and raw label maps [n, S, S] uint8 (0 unlabelled, 1 background, c + 1)."""

    images: torch.Tensor
    labels: torch.Tensor


def _pick(pools: list, which: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random index from pools[which[i]] for each i."""
    out = torch.zeros(len(which), dtype=torch.long)
    for k, pool in enumerate(pools):
        rows = (which == k).nonzero().flatten()
        if len(rows):
            out[rows] = pool[torch.randint(0, len(pool), (len(rows),), generator=generator)]
    return out


def _render_chunk(src: MiniSegSources, split: str, n: int, size: int, generator: torch.Generator,
                  max_objects: int) -> RenderedSeg:
    canvas = textures(n, size, generator, CONTRAST)
    labels = torch.full((n, size, size), BACKGROUND, dtype=torch.uint8)
    ambiguous = torch.zeros(n, size, size, dtype=torch.bool)
    grid = math.ceil(math.sqrt(max_objects))
    cell = size / grid
    counts = torch.randint(1, max_objects + 1, (n,), generator=generator)
    cells = torch.argsort(torch.rand(n, grid * grid, generator=generator), dim=1)
    n_shapes, n_letters = len(SHAPES), len(LETTERS)
    for k in range(max_objects):
        present = k < counts
        cls = torch.randint(1, len(CLASSES), (n,), generator=generator)  # object class, 1..14
        side = uniform(n, 0.3 * size, 0.6 * size, generator)
        row, col = cells[:, k] // grid, cells[:, k] % grid
        center = torch.stack([col, row], 1) * cell + cell / 2 + uniform(2 * n, -1, 1, generator).view(n, 2) * cell / 4
        theta = place_theta(center, side, uniform(n, 0, 2 * math.pi, generator), size)
        color = contrasting_colors(canvas, generator)
        sprites = torch.zeros(n, SPRITE, SPRITE)
        source = cls - 1
        rows = (present & (source < n_shapes)).nonzero().flatten()
        sprites[rows] = shape_sprites(source[rows], generator)
        rows = (present & (source >= n_shapes) & (source < n_shapes + n_letters)).nonzero().flatten()
        sprites[rows] = src.glyphs[_pick(src.letter_pools[split], source[rows] - n_shapes, generator)]
        rows = (present & (source >= n_shapes + n_letters)).nonzero().flatten()
        sprites[rows] = src.digits[_pick(src.digit_pools[split], source[rows] - n_shapes - n_letters, generator)]
        canvas, alpha = paste(canvas, sprites[:, None], theta, color, mask=present)
        a = alpha[:, 0]
        labels = torch.where(a >= 0.5, (cls + 1).to(torch.uint8)[:, None, None], labels)
        ambiguous = torch.where(a >= 0.75, torch.zeros_like(ambiguous), ambiguous | ((a > 0.25) & (a < 0.75)))
    labels = torch.where(ambiguous, torch.full_like(labels, UNLABELLED), labels)
    return RenderedSeg(canvas.clamp(0, 1), labels)


def _split_seed(seed: int, split: str) -> int:
    digest = hashlib.sha256(f"miniseg/{seed}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def render_miniseg(split: str, n: int, seed: int = 0, size: int = 128, max_objects: int = 4,
                   sources: Optional[MiniSegSources] = None, chunk: int = 100) -> RenderedSeg:
    """Render `n` images of a split (the ones `build_miniseg` writes for these settings).

    Args:
        split: "training" or "validation".
        n: Number of images.
        seed: Builder seed.
        size: Image side in pixels.
        max_objects: Most objects per image (1..9; a ceil(sqrt) grid of cells).
        sources: Pre-loaded sources for `seed`.
        chunk: Images rendered per batch.
    """
    if split not in SPLITS:
        raise ValueError(f"mini-segmentation split {split!r}; expected one of {SPLITS}")
    if not 1 <= max_objects <= 9:
        raise ValueError(f"mini-segmentation max_objects={max_objects}; expected 1..9")
    sources = sources if sources is not None else load_sources(seed)
    generator = torch.Generator().manual_seed(_split_seed(seed, split))
    parts = [_render_chunk(sources, split, min(chunk, n - i), size, generator, max_objects)
             for i in range(0, n, chunk)]
    return RenderedSeg(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))




def heldout_splits(n_train: int) -> Dict[str, range]:
    """The held-out splits of `n_train` training images: `train<n - h>` (the first images) and `val<h>` (the last
    h = 20 %, at least one), e.g. train800 / val200 for 1,000; none below two images."""
    if n_train < 2:
        return {}
    held = max(1, round(n_train * HELDOUT))
    return {f"train{n_train - held}": range(n_train - held), f"val{held}": range(n_train - held, n_train)}


def _link_files(source: Path, names: Sequence[str], dest: Path) -> None:
    """Hard links in `dest` to the files `names` of `source` (copies where links fail)."""
    for name in names:
        try:
            os.link(source / name, dest / name)
        except OSError:
            shutil.copy2(source / name, dest / name)


def write_heldout_splits(root: PathLike, n_train: int) -> None:
    """Add the held-out splits (`heldout_splits`) to a built folder as hard links (copies where links fail) to its
    training files; each split folder is written atomically and kept when it exists.

    Args:
        root: A mini-segmentation folder.
        n_train: Its training images.
    """
    root = Path(root)
    for split, indices in heldout_splits(n_train).items():
        for kind, suffix in (("images", ".jpg"), ("annotations", ".png")):
            dest = root / kind / split
            if dest.is_dir():
                continue
            names = [f"{i:06d}{suffix}" for i in indices]
            build_atomically(dest, functools.partial(_link_files, root / kind / "training", names))


def build_miniseg(root: PathLike, seed: int = 0, n_train: int = 1000, n_val: int = 500, size: int = 128,
                  max_objects: int = 4, progress: bool = True) -> Path:
    """Write the mini-segmentation data set to `root` (ADE20K layout), atomically; keep an existing one built with
    the same settings.

    Args:
        root: The data set folder to create.
        seed: Fixes every image; the same seed gives the same files.
        n_train, n_val: Images in the training and validation splits.
        size: Image side in pixels.
        max_objects: Most objects per image.
        progress: Show progress bars.

    Returns:
        `root`. meta.json records the settings, class pixel shares, the unlabelled share and the build time.
    """
    root = Path(root)
    settings = {"format": FORMAT_VERSION, "seed": seed, "image_size": size, "max_objects": max_objects,
                "counts": {"training": n_train, "validation": n_val}}
    if root.exists():
        check_built(root, settings, "mini-segmentation folder")
        write_heldout_splits(root, n_train)
        return root
    for n, name in ((n_train, "training"), (n_val, "validation")):
        if n < 1:
            raise ValueError(f"mini-segmentation: the {name} split needs at least one image, got {n}")
    start = time.perf_counter()

    def fill(tmp: Path) -> None:
        sources = load_sources(seed)
        shares, unlabelled = {}, {}
        for split, n in (("training", n_train), ("validation", n_val)):
            rendered = render_miniseg(split, n, seed, size, max_objects, sources)
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "annotations" / split).mkdir(parents=True)
            pixels = (rendered.images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for i in tqdm(range(n), desc=f"miniseg {split}", leave=False, disable=not progress):
                Image.fromarray(pixels[i], mode="RGB").save(tmp / "images" / split / f"{i:06d}.jpg", quality=95)
                Image.fromarray(rendered.labels[i].numpy(), mode="L").save(
                    tmp / "annotations" / split / f"{i:06d}.png", compress_level=6)
            counts = torch.bincount(rendered.labels.flatten().long(), minlength=len(CLASSES) + 1).double()
            shares[split] = {c: round(float(v), 5) for c, v in zip(CLASSES, counts[1:] / counts.sum())}
            unlabelled[split] = round(float(counts[UNLABELLED] / counts.sum()), 5)
        (tmp / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
        write_heldout_splits(tmp, n_train)
        meta = {**settings, "layout": "ade20k", "num_classes": len(CLASSES), "classes": list(CLASSES),
                "raw_values": "0 unlabelled, 1 background, c + 1 for class c of classes (reduce_zero_label)",
                "pixel_share": shares, "unlabelled_share": unlabelled,
                "heldout": {k: [v.start, v.stop] for k, v in heldout_splits(n_train).items()},
                "validation_fonts": sources.validation_fonts, "seconds": round(time.perf_counter() - start, 1)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    return build_atomically(root, fill, settings, "mini-segmentation folder")


class MiniSeg(ADE20K):
    """A mini-segmentation folder (or any ADE20K-layout folder with a `classes.txt`): classes read from the folder.

    Args:
        root: The folder `build_miniseg` wrote.
        split: "training" or "validation" ("train" / "val" accepted), or a held-out split (`heldout_splits`).
        transforms: Pair transform; `Normalize()` by default.
    """

    def __init__(self, root: PathLike, split: str = "training", transforms: Optional[Transform] = None) -> None:
        super().__init__(root, split, transforms, classes=read_class_names(Path(root) / "classes.txt"))
