"""Raw readers: IDX parsing (on files written here), the Debian Fashion-MNIST files, digits and font glyphs."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from dytune.data import sources


def write_idx(path: Path, array: np.ndarray, code: int = 0x08, compress: bool = True) -> None:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x.gz" if compress else "x")
    write_idx(path, array, compress=compress)
    np.testing.assert_array_equal(sources.read_idx(path), array)


def test_read_idx_big_endian_int32(tmp_path):
    array = np.array([1, -2, 70000], dtype=">i4")
    write_idx(tmp_path / "x.gz", array, code=0x0C)
    assert sources.read_idx(tmp_path / "x.gz").tolist() == [1, -2, 70000]


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match="junk: not an IDX file"):
        sources.read_idx(tmp_path / "junk")
    write_idx(tmp_path / "short", np.zeros((2, 2), np.uint8), compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="short: header declares shape"):
        sources.read_idx(tmp_path / "short")


def test_fashion_mnist_from_a_given_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 5), ("t10k", 3)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8), compress=False)
    images, labels = sources.load_fashion_mnist("test", root=tmp_path)
    assert images.shape == (3, 28, 28) and labels.dtype == np.int64


def test_fashion_mnist_missing_names_folder_and_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        sources.load_fashion_mnist("train", root=tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(ValueError, match="'valid'"):
        sources.load_fashion_mnist("valid", root=tmp_path)


def _debian_fashion_mnist():
    try:
        return sources.find_fashion_mnist()
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")


def test_debian_fashion_mnist_files():
    _debian_fashion_mnist()
    train_x, train_y = sources.load_fashion_mnist("train")
    test_x, test_y = sources.load_fashion_mnist("test")
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert np.bincount(train_y).tolist() == [6000] * 10 and np.bincount(test_y).tolist() == [1000] * 10
    assert train_x.dtype == np.uint8 and train_x.max() == 255 and train_x.mean() > 50  # real items, not blanks
    assert train_y[:5].tolist() == [9, 0, 0, 3, 0]  # the published first labels: ankle boot, t-shirt x2, dress, t-shirt


def test_digits():
    images, labels = sources.load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 255
    assert sorted(set(labels.tolist())) == list(range(10))


def test_letter_fonts_and_glyphs():
    fonts = sources.letter_fonts()
    names = {f.name for f in fonts}
    assert {"DejaVuSans.ttf", "DejaVuSerif.ttf", "STIXGeneral.ttf", "cmr10.ttf"} <= names
    assert "cmex10.ttf" not in names and "DejaVuSansDisplay.ttf" not in names
    glyphs = sources.render_glyphs("IW", [fonts[0]], size=32)
    assert glyphs.images.shape == (2, 32, 32) and glyphs.chars == ("I", "W")
    i_ink, w_ink = (glyphs.images > 0).sum(axis=(1, 2))
    assert 0 < i_ink < w_ink  # a thin I covers less than a W scaled to the same box
