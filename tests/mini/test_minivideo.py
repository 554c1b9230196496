"""The mini-video generator: layouts, real decodable files, class rules (order matters for motion_order only)."""
import json
import math

import pytest
import torch

pytest.importorskip("av")

from dytune.mini import minivideo  # noqa: E402
from dytune.mini.minivideo import REVERSED, TASKS, build_minivideo, render_clips, write_video  # noqa: E402
from dytune.tasks.video.data import PyAVReader, VideoDataset, kinetics_recipe, read_video_list, ssv2_recipe  # noqa: E402

COUNTS = dict(n_train=6, n_val=2, n_test=4)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("minivideo")
    stale = root / ".shapes_motion.tmp-999999999"  # left by a builder that died
    stale.mkdir()
    folders = build_minivideo(root, seed=0, progress=False, **COUNTS)
    assert not stale.exists()
    return root, folders


def test_kinetics_layout_of_shapes_motion(built):
    _, folders = built
    folder = folders["shapes_motion"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["num_classes"] == 16 and meta["codec"] == "h264" and meta["frames"] == 16
    assert sorted(p.name for p in folder.iterdir()) == ["classes.txt", "meta.json", "test.txt", "train6.txt",
                                                        "train6val2.txt", "val2.txt", "videos"]
    samples = read_video_list(folder / "train6val2.txt", num_classes=16)
    assert len(samples) == 8 and all(p.endswith(".mp4") and " " in p for p, _ in samples)
    recipe = kinetics_recipe(img_size=32, num_frames=8, stride=2)
    train = VideoDataset.from_list(folder, folder / "train6.txt", recipe.sampler, recipe.train_transform,
                                   classes=folder / "classes.txt", train=True, probe=True)
    assert train.classes[0] == "circle bounce" and not train.short_videos
    assert all((i.num_frames, i.height, i.width) == (16, 64, 64) for i in train.info)
    assert train[0][0].shape == (8, 3, 32, 32)
    test = VideoDataset.from_list(folder, folder / "test.txt", recipe.sampler, recipe.test_transform,
                                  classes=folder / "classes.txt")
    assert test[0][0].shape == (3, 8, 3, 32, 32)


def test_ssv2_layout_of_motion_order(built):
    _, folders = built
    folder = folders["motion_order"]
    labels = folder / "something-something-v2-labels.json"
    splits = {s: folder / f"something-something-v2-{s}.json" for s in ("train", "validation", "test")}
    recipe = ssv2_recipe(img_size=32)
    train = VideoDataset.from_ssv2(folder / "videos", [splits["train"], splits["validation"]], labels,
                                   recipe.sampler, recipe.train_transform, train=True)
    assert len(train) == 8 and train.classes[0] == "Moving something from left to right"
    assert train[0][0].shape == (8, 3, 32, 32)
    test = VideoDataset.from_ssv2(folder / "videos", splits["test"], labels, recipe.sampler, recipe.test_transform)
    assert len(test) == 4 and test[0][0].shape == (3, 8, 3, 32, 32)
    ids = [e["id"] for s in splits.values() for e in json.loads(s.read_text())]
    assert len(set(ids)) == 12  # ids are unique across splits


def test_files_hold_the_rendered_clips(built):
    _, folders = built
    for task, name in (("shapes_motion", None), ("motion_order", "1.webm")):
        folder = folders[task]
        path = folder / (read_video_list(folder / "train6.txt")[0][0] if name is None else f"videos/{name}")
        rendered = render_clips(task, "train", 1, seed=0)
        with PyAVReader(path) as reader:
            decoded = reader.get_frames(range(16))
        assert (decoded.float() - rendered.frames[0].float()).abs().mean() < 12  # lossy codecs on textures


@pytest.mark.slow
def test_rebuilding_is_a_no_op_and_other_settings_are_refused(built):
    root, folders = built
    meta = folders["shapes_motion"] / "meta.json"
    before = meta.stat().st_mtime_ns
    assert build_minivideo(root, seed=0, progress=False, **COUNTS) == folders
    assert meta.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="was built with .* not the requested"):
        build_minivideo(root, seed=1, tasks=["shapes_motion"], progress=False, **COUNTS)
    with pytest.raises(ValueError, match="unknown mini-video task"):
        build_minivideo(root, tasks=["digits"])


@pytest.mark.slow
def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return write_video(*args, **kwargs)

    monkeypatch.setattr(minivideo, "write_video", failing)
    with pytest.raises(KeyboardInterrupt):
        build_minivideo(tmp_path, tasks=["motion_order"], progress=False, **COUNTS)
    assert list(tmp_path.iterdir()) == []


def test_deterministic_balanced_and_prefix_stable():
    a = render_clips("motion_order", "val", 20, seed=3)
    again = render_clips("motion_order", "val", 5, seed=3)  # the same seed, a shorter split
    assert torch.equal(again.frames, a.frames[:5]) and torch.equal(again.labels, a.labels[:5])
    assert torch.bincount(a.labels[:16], minlength=8).tolist() == [2] * 8  # blocks of one permutation each
    assert not torch.equal(render_clips("motion_order", "test", 5, seed=3).frames, a.frames[:5])


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_encoding_is_byte_identical(codec, tmp_path):
    frames = render_clips("shapes_motion", "val", 1, seed=0).frames[0]
    suffix = minivideo.CODECS[codec][0]
    one, two = write_video(tmp_path / f"a{suffix}", frames, codec), write_video(tmp_path / f"b{suffix}", frames, codec)
    assert one.read_bytes() == two.read_bytes()


def _trend_label(center: torch.Tensor, side: torch.Tensor, angle: torch.Tensor) -> int:
    """motion_order's rule read off one trajectory: what changes, and in which direction."""
    dx, dy = (center[-1] - center[0]).tolist()
    turn, zoom = float(angle[-1] - angle[0]), math.log(float(side[-1] / side[0]))
    if abs(turn) > 0.5:
        return 4 if turn < 0 else 5  # clockwise on screen = decreasing counter-clockwise angle
    if abs(zoom) > 0.3:
        return 6 if zoom > 0 else 7
    if abs(dx) > abs(dy):
        return 0 if dx > 0 else 1
    return 2 if dy < 0 else 3


def test_motion_order_classes_follow_frame_order():
    clips = render_clips("motion_order", "train", 64, seed=0)
    assert set(clips.labels.tolist()) == set(range(8))
    for i, label in enumerate(clips.labels.tolist()):
        forward = _trend_label(clips.center[i], clips.side[i], clips.angle[i])
        backward = _trend_label(clips.center[i].flip(0), clips.side[i].flip(0), clips.angle[i].flip(0))
        assert forward == label and backward == REVERSED[label] != label


def test_shapes_motion_classes_are_shape_and_motion():
    clips = render_clips("shapes_motion", "train", 64, seed=0)
    shape, motion = clips.labels // 4, clips.labels % 4
    assert torch.equal(clips.shape, shape)
    travel = (clips.center - clips.center[:, :1]).norm(dim=-1).amax(1)
    spread = clips.side.amax(1) / clips.side.amin(1)
    hidden = (~clips.visible).any(1)
    assert bool((travel[motion <= 1] > 8).all() and (travel[motion >= 2] < 1e-4).all())  # bounce, orbit move
    assert bool((spread[motion == 2] > 1.3).all() and (spread[motion != 2] == 1).all())  # pulse
    assert torch.equal(hidden, motion == 3) and bool(clips.visible.any(1).all())  # blink
    assert [TASKS["shapes_motion"].classes[i] for i in (0, 15)] == ["circle bounce", "star blink"]


@pytest.mark.parametrize("task", list(TASKS))
def test_objects_stay_on_the_canvas(task):
    clips = render_clips(task, "test", 50, seed=1)
    reach = 0.45 * clips.side[..., None]  # every shape lies within 0.45 x its sprite side of the centre
    assert bool(((clips.center - reach) >= 0).all() and ((clips.center + reach) <= 64).all())
