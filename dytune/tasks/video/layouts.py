"""The files that name a data set's videos and labels: Kinetics-style `<relative path> <label>` lists with an
optional `classes.txt`, and the Something-Something-v2 labels and split JSON files; every error names the file and
line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .decode import PathLike

__all__ = ["read_video_list", "read_video_list_lines", "read_classes", "read_ssv2_labels", "read_ssv2_split",
           "ssv2_class_name"]


def read_video_list(list_file: PathLike, num_classes: Optional[int] = None) -> List[Tuple[str, int]]:
    """Parse `<relative video path> <label>` lines (split on the last whitespace: paths may hold spaces).

    Args:
        list_file: The list file.
        num_classes: Labels must lie in [0, num_classes).
    """
    return [(path, label) for _, path, label in read_video_list_lines(list_file, num_classes)]


def read_video_list_lines(list_file: PathLike, num_classes: Optional[int] = None) -> List[Tuple[int, str, int]]:
    """(line number, relative video path, label) of each `<relative video path> <label>` line.

    Args:
        list_file: The list file.
        num_classes: Labels must lie in [0, num_classes).
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: list file not found")
    samples = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{list_file}:{number}: expected '<video path> <integer label>', got {line!r}")
        label = int(parts[1])
        if label < 0 or (num_classes is not None and label >= num_classes):
            top = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
            raise ValueError(f"{list_file}:{number}: label {label} is outside {top}")
        samples.append((number, parts[0], label))
    if not samples:
        raise ValueError(f"{list_file}: the list is empty")
    return samples


def read_classes(path: PathLike) -> List[str]:
    """Class names, one per line (a `classes.txt`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class-name file not found")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: no class names")
    return names


def _load_json(path: Path, what: str) -> Tuple[Any, str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    text = path.read_text()
    try:
        return json.loads(text), text
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def ssv2_class_name(template: str) -> str:
    """The class of a Something-Something template: its brackets removed ("Moving [something] up" -> "Moving
    something up")."""
    return template.replace("[", "").replace("]", "")


def read_ssv2_labels(labels_file: PathLike) -> List[str]:
    """Class names ordered by id from `something-something-v2-labels.json` ({name: "id"}); ids must be 0..K-1."""
    labels_file = Path(labels_file)
    data, text = _load_json(labels_file, "Something-Something labels file")
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{labels_file}: expected a non-empty JSON object {{class name: id}}")
    names: Dict[int, str] = {}
    for name, value in data.items():
        line = _line_at(text, max(text.find(json.dumps(name)), 0))
        if not str(value).isdigit():
            raise ValueError(f"{labels_file}:{line}: class {name!r} has id {value!r}, expected an integer")
        if int(value) in names:
            raise ValueError(f"{labels_file}:{line}: classes {names[int(value)]!r} and {name!r} share id {value}")
        names[int(value)] = name
    if sorted(names) != list(range(len(names))):
        gap = min(set(range(len(names))) - set(names))
        raise ValueError(f"{labels_file}: class ids must be 0..{len(names) - 1}; id {gap} is missing")
    return [names[i] for i in range(len(names))]


def _json_array(path: Path, text: str) -> Iterator[Tuple[int, Any]]:
    """The elements of a top-level JSON array (already known to be valid JSON) with the line each starts on."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text[pos:pos + 1] == "[":
        raise ValueError(f"{path}:{_line_at(text, pos)}: expected a JSON array of videos")
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        yield _line_at(text, pos), item
        pos = end


def read_ssv2_split(split_file: PathLike, classes: Sequence[str], video_ext: str = ".webm") -> List[Tuple[str, int]]:
    """(`<id><video_ext>`, label) of a Something-Something train/validation JSON ([{"id", "template", ...}]).

    Args:
        split_file: The split's JSON file.
        classes: Class names in id order (`read_ssv2_labels`); each template, brackets removed, must be one of them.
        video_ext: File extension of the videos.
    """
    split_file = Path(split_file)
    _, text = _load_json(split_file, "Something-Something split file")
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for line, item in _json_array(split_file, text):
        if not isinstance(item, dict) or "id" not in item:
            raise ValueError(f"{split_file}:{line}: expected an object with 'id' and 'template', got {item!r:.80}")
        if "template" not in item:
            raise ValueError(f"{split_file}:{line}: video {item['id']} has no 'template' (an unlabelled test split?)")
        name = ssv2_class_name(str(item["template"]))
        if name not in index:
            raise ValueError(f"{split_file}:{line}: video {item['id']}: template {item['template']!r} -> "
                             f"{name!r} is not a class of the labels file ({len(classes)} classes)")
        samples.append((f"{item['id']}{video_ext}", index[name]))
    if not samples:
        raise ValueError(f"{split_file}: the split is empty")
    return samples
