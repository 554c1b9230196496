"""Readers for the raw, offline-installable image sources of mini-VTAB and of the mini backbone's pre-training.

* Fashion-MNIST: the IDX files of the Debian package `dataset-fashion-mnist`
  (`apt-get install dataset-fashion-mnist`, files under `/usr/share/datasets/fashion-mnist`), or any folder
  holding the four `*-idx?-ubyte[.gz]` files, e.g. the `raw/` folder of torchvision's
  `FashionMNIST(root, download=True)` where there is internet.
* Handwritten digits: scikit-learn's bundled `load_digits` (8x8, 1,797 images).
* Letters: glyphs rasterised with the TrueType fonts that ship inside matplotlib.

Every reader returns uint8 arrays of shape (N, H, W) with 255 = ink, and int64 labels.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIRS", "Glyphs", "find_fashion_mnist", "letter_fonts", "load_digits",
    "load_fashion_mnist", "read_idx", "render_glyphs",
]

PathLike = Union[str, os.PathLike]

FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
# searched in order when no folder is given; $DYTUNE_FASHION_MNIST overrides
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
               0x0E: np.dtype(">f8")}


def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzip-compressed or not.

    Args:
        path: the `.gz` or uncompressed IDX file.

    Returns:
        The array with the shape and dtype its header declares.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: header declares shape {shape} ({expected} bytes) but holds {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(root: Optional[PathLike] = None) -> Path:
    """The folder holding the Fashion-MNIST IDX files.

    Args:
        root: a folder to use; otherwise `$DYTUNE_FASHION_MNIST`, then the Debian package's folder.

    Raises:
        FileNotFoundError: naming the folders searched and how to install the data.
    """
    candidates = [Path(root)] if root is not None else [
        Path(p) for p in (os.environ.get("DYTUNE_FASHION_MNIST"), *FASHION_MNIST_DIRS) if p]
    for folder in candidates:
        if all(_idx_file(folder, stem) for pair in _FASHION_MNIST_FILES.values() for stem in pair):
            return folder
    raise FileNotFoundError(
        f"Fashion-MNIST IDX files ({', '.join(s for p in _FASHION_MNIST_FILES.values() for s in p)}[.gz]) not "
        f"found in {', '.join(map(str, candidates))}. Install them with "
        f"`apt-get install dataset-fashion-mnist`, or, with internet, "
        f"`torchvision.datasets.FashionMNIST(ROOT, download=True)` and pass ROOT/FashionMNIST/raw.")


def load_fashion_mnist(split: str = "train", root: Optional[PathLike] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) uint8 and labels (N,) int64 in 0..9.

    Args:
        split: "train" (60,000 images) or "test" (10,000).
        root: the folder of the IDX files; see `find_fashion_mnist`.
    """
    if split not in _FASHION_MNIST_FILES:
        raise ValueError(f"Fashion-MNIST split must be one of {sorted(_FASHION_MNIST_FILES)}, got {split!r}")
    folder = find_fashion_mnist(root)
    image_stem, label_stem = _FASHION_MNIST_FILES[split]
    images, labels = read_idx(_idx_file(folder, image_stem)), read_idx(_idx_file(folder, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match")
    if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{folder}: {split} labels exceed {len(FASHION_MNIST_CLASSES) - 1}")
    return images.astype(np.uint8), labels.astype(np.int64)


def load_digits() -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits: images (1797, 8, 8) uint8 and labels (1797,) int64 in 0..9."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as e:
        raise ImportError("the digits source needs scikit-learn: pip install scikit-learn") from e
    digits = sklearn_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # pixel values are counts 0..16
    return images, digits.target.astype(np.int64)


@dataclass(frozen=True)
class Glyphs:
    """Rasterised glyphs: `images` (N, size, size) uint8, with the character and font file of each."""

    images: np.ndarray
    chars: Tuple[str, ...]
    fonts: Tuple[str, ...]


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def letter_fonts(chars: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ") -> List[Path]:
    """The TrueType fonts shipped with matplotlib that draw every one of `chars` as a real glyph.

    Fonts without a glyph named after each character (symbol fonts such as cmex10, the STIX size variants) are
    left out; cmsy10 stays, as its capitals are calligraphic letters.
    """
    from matplotlib.ft2font import FT2Font

    fonts = []
    for path in sorted(_font_dir().glob("*.ttf")):
        font = FT2Font(str(path))
        names = [font.get_glyph_name(font.get_char_index(ord(c))) for c in chars]
        # a real letter glyph is named after its character ("A", or "a" in the Computer Modern fonts)
        if all(font.get_char_index(ord(c)) and n.lower() == c.lower() for c, n in zip(chars, names)):
            fonts.append(path)
    if not fonts:
        raise FileNotFoundError(f"no font in {_font_dir()} draws all of {chars!r}")
    return fonts


def _rasterise(font: Any, char: str, size: int) -> np.ndarray:
    font.clear()
    font.set_size(4 * size, 72)  # draw large, then shrink: smoother edges than hinting at the target size
    font.set_text(char)
    font.draw_glyphs_to_bitmap(antialiased=True)
    ink = np.asarray(font.get_image(), dtype=np.float32)
    rows, cols = np.nonzero(ink > 0)
    if len(rows) == 0:
        raise ValueError(f"{Path(font.fname).name}: character {char!r} renders empty")
    ink = ink[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    side = max(ink.shape)
    square = np.zeros((side, side), np.float32)  # centre the glyph's box in a square, keeping its aspect ratio
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square[top: top + ink.shape[0], left: left + ink.shape[1]] = ink
    return _resize(square, size)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Area-average resize of a square float image to size x size, as uint8."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(image)[None, None]
    out = F.interpolate(t, size=(size, size), mode="area")[0, 0]
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


def render_glyphs(chars: Sequence[str], fonts: Sequence[PathLike], size: int = 32) -> Glyphs:
    """Rasterise every character in every font, each glyph scaled to fill a size x size square.

    Args:
        chars: the characters to draw.
        fonts: TrueType font files, e.g. from `letter_fonts()`.
        size: side of the output squares in pixels.
    """
    from matplotlib.ft2font import FT2Font

    images, out_chars, out_fonts = [], [], []
    for font in fonts:
        face = FT2Font(str(font))
        for char in chars:
            images.append(_rasterise(face, char, size))
            out_chars.append(char)
            out_fonts.append(Path(font).name)
    return Glyphs(np.stack(images), tuple(out_chars), tuple(out_fonts))
