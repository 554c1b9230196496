"""Kinetics list files and Something-Something JSON files: paths, labels and every error naming the file and line."""
import json

import pytest

pytest.importorskip("av")

from dytune.tasks.video.datasets import VideoDataset  # noqa: E402
from dytune.tasks.video.layouts import read_ssv2_labels, read_video_list  # noqa: E402
from dytune.tasks.video.samplers import SegmentSampler  # noqa: E402

from .clips import ssv2_tree  # noqa: E402


@pytest.mark.parametrize("text,message", [
    ("a.mp4 0\nb.mp4 7\n", r"list.txt:2: label 7 is outside 0..1"),
    ("a.mp4 0\nb.mp4\n", r"list.txt:2: expected '<video path> <integer label>'"),
    ("a.mp4 -1\n", r"list.txt:1: label -1 is outside 0..1"),
    ("\n\n", r"list.txt: the list is empty"),
])
def test_bad_list_files(text, message, tmp_path):
    (tmp_path / "list.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_video_list(tmp_path / "list.txt", num_classes=2)


def test_list_paths_may_hold_spaces(tmp_path):
    (tmp_path / "list.txt").write_text("videos/playing guitar/a b.mp4   3\n")
    assert read_video_list(tmp_path / "list.txt") == [("videos/playing guitar/a b.mp4", 3)]


def test_ssv2_template_not_in_labels_names_file_and_line(tmp_path):
    root = ssv2_tree(tmp_path, templates=("Moving [something] up", "Moving [something] down"))
    with pytest.raises(ValueError, match=r"train.json:3: video 101: template 'Moving \[something\] down' -> "
                                         r"'Moving something down' is not a class of the labels file"):
        VideoDataset.from_ssv2(root / "videos", root / "train.json", root / "labels.json", SegmentSampler(4))


@pytest.mark.parametrize("content,message", [
    ('[\n{"id": "1", "template": "Moving [something] up"},\n{"id": "2"}\n]', r"train.json:3: video 2 has no "
                                                                               r"'template'"),
    ('[\n{"id": "1", "template": "Moving [something] up"}\n{"id": "2"}', r"train.json:\d+: invalid JSON"),
    ('[]', r"train.json: the split is empty"),
    ('{"id": "1"}', r"train.json:1: expected a JSON array"),
])
def test_bad_ssv2_split_files(content, message, tmp_path):
    root = ssv2_tree(tmp_path)
    (root / "train.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        VideoDataset.from_ssv2(root / "videos", root / "train.json", root / "labels.json", SegmentSampler(4))


@pytest.mark.parametrize("labels,message", [
    ({"Moving something up": "0", "Turning something clockwise": "x"}, r"labels.json:3: class 'Turning something "
                                                                       r"clockwise' has id 'x'"),
    ({"Moving something up": "0", "Turning something clockwise": "2"}, r"labels.json: class ids must be 0..1; id 1"),
    ({"Moving something up": "0", "Turning something clockwise": "0"}, r"labels.json:3: classes .* share id 0"),
    ({}, r"labels.json: expected a non-empty JSON object"),
])
def test_bad_ssv2_labels_files(labels, message, tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps(labels, indent=1))
    with pytest.raises(ValueError, match=message):
        read_ssv2_labels(tmp_path / "labels.json")
