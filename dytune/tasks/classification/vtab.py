"""VTAB-1K in the NOAH/SSF layout: `<root>/<task>/{train800,val200,train800val200,test}.txt` plus the images."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from ...data.lists import ImageListDataset, read_list_lines

VTAB_CLASSES: Dict[str, int] = {
    "cifar": 100, "caltech101": 102, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37, "svhn": 10,
    "sun397": 397, "patch_camelyon": 2, "eurosat": 10, "resisc45": 45, "diabetic_retinopathy": 5, "clevr_count": 8,
    "clevr_dist": 6, "dmlab": 6, "kitti": 4, "dsprites_loc": 16, "dsprites_ori": 16, "smallnorb_azi": 18,
    "smallnorb_ele": 9,
}
VTAB_GROUPS: Dict[str, Tuple[str, ...]] = {
    "natural": ("cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"),
    "specialized": ("patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"),
    "structured": ("clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori", "smallnorb_azi",
                   "smallnorb_ele"),
}
VTAB_SPLITS = ("train800", "val200", "train800val200", "test")


def num_classes(root: os.PathLike, task: str) -> int:
    """Class count of a task: the VTAB-1K table, else `classes.txt` in the task folder (one name per line), else the
    largest label + 1 of its list files, which must then leave no class without an image."""
    if task in VTAB_CLASSES:
        return VTAB_CLASSES[task]
    folder = Path(root) / task
    names = folder / "classes.txt"
    if names.is_file():
        count = len([n for n in names.read_text().splitlines() if n.strip()])
        if not count:
            raise ValueError(f"{names}: no class names (expected one per line)")
        return count
    first_line: Dict[int, Tuple[Path, int]] = {}  # label -> (list file, line) of its first image
    for split in VTAB_SPLITS:
        file = folder / f"{split}.txt"
        if file.is_file():
            for number, _, label in read_list_lines(file):
                first_line.setdefault(label, (file, number))
    if not first_line:
        raise FileNotFoundError(f"{folder}: no {', '.join(s + '.txt' for s in VTAB_SPLITS)} to read the classes from")
    top = max(first_line)
    missing = sorted(set(range(top)) - set(first_line))
    if missing:
        file, number = first_line[top]
        shown = ", ".join(map(str, missing[:20])) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise ValueError(f"{file}:{number}: label {top} implies {top + 1} classes, but no image in any split of "
                         f"{folder} has label {shown}; fix the label, or list the {top + 1} class names in {names}")
    return top + 1


def vtab_dataset(
        root: os.PathLike,
        task: str,
        split: str,
        transform: Optional[Callable] = None,
        cache: bool = False,
        skip_bad_images: bool = False,
) -> ImageListDataset:
    """One split of one VTAB-1K-layout task.

    Args:
        root: Folder holding one sub-folder per task.
        task: Task folder name (the 19 VTAB-1K names, or any task written in the same layout, e.g. mini-VTAB).
        split: train800, val200, train800val200 or test.
        transform: Image transform.
        cache: Keep decoded images in memory.
        skip_bad_images: Skip unreadable images instead of failing.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: VTAB-1K root not found")
    folder = root / task
    if not folder.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(f"{folder}: task folder not found; {root} holds {known}")
    if split not in VTAB_SPLITS:
        raise ValueError(f"VTAB split {split!r}: expected one of {', '.join(VTAB_SPLITS)}")
    count = num_classes(root, task)
    dataset = ImageListDataset(folder, folder / f"{split}.txt", count, transform, cache, skip_bad_images)
    names = folder / "classes.txt"
    if names.is_file():  # class names for predictions, saved with the run
        listed = [n.strip() for n in names.read_text().splitlines() if n.strip()]
        if len(listed) != count:
            raise ValueError(f"{names}: {len(listed)} class names, but task {task!r} has {count} classes")
        dataset.classes = listed
    return dataset
