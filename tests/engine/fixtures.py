"""Small image datasets written inside the tests, in each layout the engine reads."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
from PIL import Image

COLOURS = [(220, 40, 40), (40, 200, 60), (40, 80, 230), (230, 200, 30), (180, 60, 200)]


def _image(label: int, rng: np.random.Generator, size: int) -> Image.Image:
    """A class-coloured square at a random place on a noisy grey canvas."""
    canvas = rng.integers(90, 140, size=(size, size, 3), dtype=np.uint8)
    side = size // 3
    y, x = rng.integers(0, size - side, size=2)
    canvas[y:y + side, x:x + side] = COLOURS[label % len(COLOURS)]
    return Image.fromarray(canvas)


def write_vtab_task(root: Path, task: str = "toy", classes: int = 3, counts: Dict[str, int] = None,
                    size: int = 32, seed: int = 0) -> Path:
    """A task in the VTAB-1K layout: images/<split>/*.png and {train800,val200,train800val200,test}.txt."""
    counts = counts or {"train800": 24, "val200": 6, "test": 12}
    rng = np.random.default_rng(seed)
    folder = Path(root) / task
    lines: Dict[str, list] = {}
    for split, n in counts.items():
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        lines[split] = []
        for i in range(n):
            label = i % classes
            rel = f"images/{split}/{i:06d}.png"
            _image(label, rng, size).save(folder / rel)
            lines[split].append(f"{rel} {label}")
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, rows in lines.items():
        (folder / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return folder


def write_image_folder(root: Path, classes: int = 3, per_class: int = 4, size: int = 32, seed: int = 0) -> Path:
    """An ImageFolder tree with train/ and val/."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in range(classes):
            folder = Path(root) / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                _image(c, rng, size).save(folder / f"{i}.png")
    return Path(root)
