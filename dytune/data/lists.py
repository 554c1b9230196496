"""Image-list datasets: `<relative image path> <label>` per line, as in the VTAB-1K release everyone uses."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset


def read_list_lines(list_file: Path, num_classes: Optional[int] = None) -> List[Tuple[int, str, int]]:
    """Parse a list file into (line number, image path, label), naming the file and line of anything malformed."""
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: list file not found")
    rows = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{list_file}:{number}: expected '<image path> <integer label>', got {line!r}")
        label = int(parts[1])
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise ValueError(f"{list_file}:{number}: label {label} is outside 0..{(num_classes or 1) - 1}")
        rows.append((number, parts[0], label))
    if not rows:
        raise ValueError(f"{list_file}: the split is empty")
    return rows


def read_list(list_file: Path, num_classes: Optional[int] = None) -> List[Tuple[str, int]]:
    """Parse a list file into (image path, label), naming the file and line of anything malformed."""
    return [(path, label) for _, path, label in read_list_lines(list_file, num_classes)]


def load_rgb(path: Path) -> Image.Image:
    """Decode an image as RGB, naming the file when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: cannot decode image ({e})") from e


class ImageListDataset(Dataset):
    """Images named by a list file, relative to `root`.

    Args:
        root: Directory the image paths are relative to.
        list_file: The list file.
        num_classes: Labels must lie in [0, num_classes).
        transform: Applied to the decoded RGB image.
        cache: Keep decoded images in memory (worth it for small sets such as VTAB-1K's 1,000 images).
        skip_bad_images: Drop missing or undecodable images (counted in `skipped`) instead of failing.
    """

    def __init__(
            self,
            root: os.PathLike,
            list_file: os.PathLike,
            num_classes: Optional[int] = None,
            transform: Optional[Callable] = None,
            cache: bool = False,
            skip_bad_images: bool = False,
    ) -> None:
        self.root = Path(root)
        self.list_file = Path(list_file)
        self.transform = transform
        self.skipped: List[str] = []
        samples = read_list(self.list_file, num_classes)
        missing = [p for p, _ in samples if not (self.root / p).is_file()]
        if skip_bad_images:
            good = []
            for path, label in samples:
                try:
                    image = load_rgb(self.root / path)
                except (FileNotFoundError, ValueError) as e:
                    self.skipped.append(str(e))
                    continue
                good.append((path, label, image if cache else None))
            if not good:
                raise ValueError(f"{self.list_file}: no readable image left after skipping {len(self.skipped)}")
            self.samples = [(p, lab) for p, lab, _ in good]
            self._cache = [img for _, _, img in good] if cache else None
        else:
            if missing:
                raise FileNotFoundError(f"{self.list_file}: {len(missing)} listed image(s) not found under "
                                        f"{self.root}, e.g. {missing[0]} (use skip_bad_images to skip them)")
            self.samples = samples
            self._cache = [load_rgb(self.root / p) for p, _ in samples] if cache else None
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = self._cache[index] if self._cache is not None else load_rgb(self.root / path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label
