"""Tiny copies of the paper's torchvision datasets, written in each dataset's real on-disk format.

Each writer puts a few small images under `root` exactly where the installed torchvision dataset class reads them
(file names, split files, MATLAB structs, pickles) and returns what a loader must find: the class count, the
image count per split and the labels torchvision should report. Three of the formats (CIFAR-100, SVHN,
Flowers-102) are verified against the real files' md5 sums even with download=False; `accept_fake_checksums`
lets those checks accept any existing file.
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import scipy.io as sio
from PIL import Image

__all__ = ["Expected", "WRITERS", "accept_fake_checksums", "write_cifar100", "write_svhn", "write_food101",
           "write_fgvc_aircraft", "write_oxford_iiit_pet", "write_stanford_cars", "write_flowers102", "write_dtd"]


@dataclass
class Expected:
    """What torchvision should load from the written files."""

    num_classes: int
    train: int
    test: int
    test_labels: List[int]  # in torchvision's order, after its own label mapping


def _pixels(label: int, rng: np.random.Generator, height: int = 20, width: int = 24) -> np.ndarray:
    """A noisy image whose dominant colour depends on the label."""
    colour = np.array([(label * 67) % 256, (label * 131 + 40) % 256, (label * 29 + 90) % 256], dtype=np.int16)
    noise = rng.integers(-20, 21, size=(height, width, 3))
    return np.clip(colour + noise, 0, 255).astype(np.uint8)


def _jpg(path: Path, label: int, rng: np.random.Generator, **size) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(label, rng, **size)).save(path, format="JPEG", quality=90)


def accept_fake_checksums(monkeypatch) -> None:
    """Let torchvision's md5 checks (CIFAR, SVHN, Flowers-102) accept any existing file (pytest monkeypatch)."""
    from torchvision.datasets import cifar, flowers102, svhn

    def exists(fpath, md5=None) -> bool:
        return os.path.isfile(fpath)

    for module in (cifar, svhn, flowers102):
        monkeypatch.setattr(module, "check_integrity", exists)


# ---- CIFAR-100: cifar-100-python/{train,test,meta}, pickled dicts ------------------------------------------------------
def write_cifar100(root: Path, seed: int = 0) -> Expected:
    """`data` uint8 [N, 3072] (the 1024 red, then green, then blue values of a 32x32 image), `fine_labels`,
    `coarse_labels`, `filenames`, `batch_label`; `meta` holds the 100 `fine_label_names` and 20 `coarse_label_names`."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    fine = [f"fine_{i:02d}" for i in range(100)]
    splits = {"train": [0, 1, 2, 99, 0, 1, 2, 99], "test": [99, 2, 1, 0, 0]}
    for split, labels in splits.items():
        images = np.stack([_pixels(lbl, rng, 32, 32) for lbl in labels])  # [N, 32, 32, 3]
        entry = {"filenames": [f"img_{i}.png" for i in range(len(labels))],
                 "batch_label": f"{split}ing batch 1 of 1", "fine_labels": list(labels),
                 "coarse_labels": [lbl // 5 for lbl in labels],
                 "data": images.transpose(0, 3, 1, 2).reshape(len(labels), 3072)}
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": fine, "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)]}, f,
                    protocol=2)
    return Expected(100, len(splits["train"]), len(splits["test"]), splits["test"])


# ---- SVHN: {train,test}_32x32.mat, X uint8 [32, 32, 3, N], y uint8 [N, 1] with 10 for the digit 0 ----------------------
def write_svhn(root: Path, seed: int = 0) -> Expected:
    rng = np.random.default_rng(seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    digits = {"train": [1, 2, 10, 3, 10, 1, 2, 3], "test": [10, 1, 2, 3, 10]}  # the digit 0 is stored as 10
    for split, ys in digits.items():
        images = np.stack([_pixels(y % 10, rng, 32, 32) for y in ys], axis=-1)  # [32, 32, 3, N]
        sio.savemat(str(Path(root) / f"{split}_32x32.mat"),
                    {"X": images, "y": np.array(ys, dtype=np.uint8).reshape(-1, 1)})
    return Expected(10, len(digits["train"]), len(digits["test"]), [y % 10 for y in digits["test"]])


# ---- Food-101: food-101/images/<class>/<id>.jpg, meta/{train,test}.json, meta/{classes,labels}.txt --------------------
def write_food101(root: Path, seed: int = 0) -> Expected:
    rng = np.random.default_rng(seed)
    base = Path(root) / "food-101"
    classes = ["apple_pie", "baby_back_ribs", "waffles"]
    ids = {"train": [[101, 102, 103], [201, 202], [301, 302, 303]], "test": [[104], [203, 204], [304]]}
    (base / "meta").mkdir(parents=True, exist_ok=True)
    for split, per_class in ids.items():
        meta = {}
        for c, (name, numbers) in enumerate(zip(classes, per_class)):
            meta[name] = [f"{name}/{n}" for n in numbers]
            for n in numbers:
                _jpg(base / "images" / name / f"{n}.jpg", c, rng)
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta))
        (base / "meta" / f"{split}.txt").write_text("".join(f"{rel}\n" for rels in meta.values() for rel in rels))
    (base / "meta" / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    (base / "meta" / "labels.txt").write_text("".join(f"{c.replace('_', ' ').capitalize()}\n" for c in classes))
    test_labels = [c for c, numbers in enumerate(ids["test"]) for _ in numbers]
    return Expected(len(classes), sum(map(len, ids["train"])), len(test_labels), test_labels)


# ---- FGVC-Aircraft: fgvc-aircraft-2013b/data/{variants.txt, images_variant_<split>.txt, images/<id>.jpg} ---------------
def write_fgvc_aircraft(root: Path, seed: int = 0) -> Expected:
    """Variant names hold spaces, slashes and hyphens, as the real ones do ("Cessna 172", "F/A-18"); one variant of
    variants.txt has no image, so the class count comes from the class list, not from the labels."""
    rng = np.random.default_rng(seed)
    data = Path(root) / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A300B4", "Cessna 172", "F/A-18", "Spitfire"]
    rows = {"trainval": [(1025794, 0), (1340192, 1), (56978, 2), (712345, 3), (1000001, 0), (1000002, 2)],
            "test": [(1514522, 3), (1003002, 2), (800011, 1), (1234567, 0)]}
    data.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("".join(f"{v}\n" for v in variants))
    for split, pairs in rows.items():
        (data / f"images_variant_{split}.txt").write_text("".join(f"{i:07d} {variants[c]}\n" for i, c in pairs))
        for i, c in pairs:
            _jpg(data / "images" / f"{i:07d}.jpg", c, rng)
    return Expected(len(variants), len(rows["trainval"]), len(rows["test"]), [c for _, c in rows["test"]])


# ---- Oxford-IIIT Pet: oxford-iiit-pet/annotations/{trainval,test}.txt ("<Breed>_<n> <class> <species> <breed id>") ----
def write_oxford_iiit_pet(root: Path, seed: int = 0) -> Expected:
    """Cat breeds are capitalised, dog breeds lower case, as in the real file names; class ids start at 1."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "oxford-iiit-pet"
    breeds = [("Abyssinian", 1, 1), ("american_bulldog", 2, 1), ("Bengal", 1, 2), ("great_pyrenees", 2, 2)]
    rows = {"trainval": [(0, 100), (1, 100), (2, 100), (3, 100), (0, 101), (1, 101)],
            "test": [(0, 1), (1, 1), (2, 1), (3, 1), (3, 2)]}
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    for split, pairs in rows.items():
        lines = []
        for c, n in pairs:
            breed, species, breed_id = breeds[c]
            lines.append(f"{breed}_{n} {c + 1} {species} {breed_id}\n")
            _jpg(base / "images" / f"{breed}_{n}.jpg", c, rng)
        (base / "annotations" / f"{split}.txt").write_text("".join(lines))
    return Expected(len(breeds), len(rows["trainval"]), len(rows["test"]), [c for c, _ in rows["test"]])


# ---- Stanford Cars: stanford_cars/{devkit/{cars_meta,cars_train_annos}.mat, cars_test_annos_withlabels.mat,
# cars_train/, cars_test/} ------------------------------------------------------------------------------------------------
def _annotations(rows) -> np.ndarray:
    """A 1 x N MATLAB struct array with the devkit's fields and integer types (uint8 class ids, as in the real files)."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annos = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for j, (fname, cls) in enumerate(rows):
        annos[0, j] = (np.array([[1]], np.uint8), np.array([[2]], np.uint8), np.array([[20]], np.uint16),
                       np.array([[18]], np.uint16), np.array([[cls]], np.uint8), np.array([fname]))
    return annos


def write_stanford_cars(root: Path, seed: int = 0) -> Expected:
    rng = np.random.default_rng(seed)
    base = Path(root) / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TT RS Coupe 2012", "smart fortwo Convertible 2012"]
    rows = {"train": [("00001.jpg", 1), ("00002.jpg", 2), ("00003.jpg", 3), ("00004.jpg", 4), ("00005.jpg", 1),
                      ("00006.jpg", 4)],
            "test": [("00001.jpg", 4), ("00002.jpg", 3), ("00003.jpg", 2), ("00004.jpg", 1)]}
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    class_names = np.empty((1, len(names)), dtype=object)
    class_names[0, :] = names
    sio.savemat(str(base / "devkit" / "cars_meta.mat"), {"class_names": class_names})
    sio.savemat(str(base / "devkit" / "cars_train_annos.mat"), {"annotations": _annotations(rows["train"])})
    sio.savemat(str(base / "cars_test_annos_withlabels.mat"), {"annotations": _annotations(rows["test"])})
    for split, pairs in rows.items():
        for fname, cls in pairs:
            _jpg(base / f"cars_{split}" / fname, cls - 1, rng)
    return Expected(len(names), len(rows["train"]), len(rows["test"]), [c - 1 for _, c in rows["test"]])


# ---- Flowers-102: flowers-102/{jpg/image_%05d.jpg, imagelabels.mat, setid.mat} ---------------------------------------
def write_flowers102(root: Path, seed: int = 0) -> Expected:
    """`labels` uint8 [1, N] (1..102, image k is column k-1); `trnid`, `valid`, `tstid` uint16 [1, n] image ids.
    torchvision names the 102 classes itself, so the class count is 102 whatever the labels."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "flowers-102"
    labels = [1, 2, 102, 1, 2, 102, 5, 1, 2, 102, 5, 77]  # image k has labels[k - 1]
    split_ids = {"trnid": [1, 2, 3, 7, 12], "valid": [4, 5], "tstid": [6, 8, 9, 10, 11]}
    for k, label in enumerate(labels, 1):
        _jpg(base / "jpg" / f"image_{k:05d}.jpg", label - 1, rng)
    sio.savemat(str(base / "imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8)})
    sio.savemat(str(base / "setid.mat"), {k: np.array([v], dtype=np.uint16) for k, v in split_ids.items()})
    return Expected(102, len(split_ids["trnid"]), len(split_ids["tstid"]), [labels[k - 1] - 1 for k in split_ids["tstid"]])


# ---- DTD: dtd/dtd/{images/<class>/<class>_<n>.jpg, labels/{train,val,test}<partition>.txt} -----------------------------
def write_dtd(root: Path, seed: int = 0) -> Expected:
    rng = np.random.default_rng(seed)
    data = Path(root) / "dtd" / "dtd"
    classes = ["banded", "blotchy", "zigzagged"]
    rows = {"train": [(0, 2), (1, 3), (2, 4), (0, 5), (1, 6), (2, 7)], "val": [(0, 8), (1, 9), (2, 10)],
            "test": [(2, 11), (1, 12), (0, 13), (0, 14)]}
    (data / "labels").mkdir(parents=True, exist_ok=True)
    for split, pairs in rows.items():
        lines = []
        for c, n in pairs:
            rel = f"{classes[c]}/{classes[c]}_{n:04d}.jpg"
            lines.append(rel + "\n")
            _jpg(data / "images" / rel, c, rng)
        for partition in range(1, 11):
            (data / "labels" / f"{split}{partition}.txt").write_text("".join(lines))
    (data / "labels" / "labels_joint_anno.txt").write_text(
        "".join(f"{classes[c]}/{classes[c]}_{n:04d}.jpg {classes[c]} \n" for pairs in rows.values() for c, n in pairs))
    return Expected(len(classes), len(rows["train"]), len(rows["test"]), [c for c, _ in rows["test"]])


WRITERS: Dict[str, Callable[[Path], Expected]] = {
    "cifar100": write_cifar100, "svhn": write_svhn, "food101": write_food101, "fgvc_aircraft": write_fgvc_aircraft,
    "oxford_iiit_pet": write_oxford_iiit_pet, "stanford_cars": write_stanford_cars, "flowers102": write_flowers102,
    "dtd": write_dtd,
}
