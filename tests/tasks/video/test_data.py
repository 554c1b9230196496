"""Video decoding, samplers, clip transforms and the Kinetics / Something-Something datasets, on real small files.

Each test video shows frame i as one bright 8 x 8 cell (row i // 8, column i % 8) on a dark 64 x 64 frame, which
survives every codec, so a decoded frame tells which frame it is.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from dytune.mini.minivideo import write_video  # noqa: E402
from dytune.tasks.video.data import (  # noqa: E402
    RAND_AUGMENT_OPS, ClipCompose, ClipRandAugment, DenseSampler, Normalize, PyAVReader, RandomResizedCrop,
    SegmentSampler, ShortSideResize, SpatialCrops, ToFloat, VideoDataset, VideoDecodeError, available_backends,
    kinetics_recipe, open_video, read_ssv2_labels, read_video_list, ssv2_recipe,
)

CODECS = {"h264": ".mp4", "mpeg4": ".mp4", "vp8": ".webm", "vp9": ".webm"}


def index_frames(n: int, height: int = 64, width: int = 64) -> np.ndarray:
    frames = np.full((n, height, width, 3), 30, np.uint8)
    for i in range(n):
        r, c = divmod(i, 8)
        frames[i, 8 * r:8 * r + 8, 8 * c:8 * c + 8] = 230
    return frames


def frame_index(frame: torch.Tensor) -> int:
    """The index a decoded [H, W, 3] or [3, H, W] frame shows (any value range)."""
    if frame.shape[0] == 3:
        frame = frame.permute(1, 2, 0)
    cells = frame[:64, :64].float().mean(-1).reshape(8, 8, 8, 8).mean((1, 3))
    return int(cells.argmax())


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """40-frame index videos in every codec (key frame every 8), plus a short one and broken files."""
    root = tmp_path_factory.mktemp("videos")
    out = {}
    for codec, suffix in CODECS.items():
        out[codec] = write_video(root / f"index_{codec}{suffix}", index_frames(40), codec)
    out["short"] = write_video(root / "short.mp4", index_frames(6), "h264")
    data = out["h264"].read_bytes()
    (root / "truncated.mp4").write_bytes(data[:len(data) // 2])
    out["truncated_mp4"] = root / "truncated.mp4"
    data = out["vp9"].read_bytes()
    (root / "truncated.webm").write_bytes(data[:len(data) // 2])
    out["truncated_webm"] = root / "truncated.webm"
    (root / "junk.mp4").write_bytes(b"this is not a video\n" * 40)
    out["junk"] = root / "junk.mp4"
    out["audio_only"] = _audio_only(root / "audio_only.webm")
    return out


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libopus", rate=48000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, i * 960
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ----------------------------------------------------------------------------------------------------------- decoding

@pytest.mark.parametrize("codec", list(CODECS))
def test_decoded_frames_are_the_ones_asked_for(codec, videos):
    asked = [39, 3, 3, 17, 0, 25, 38, 8, 7]
    with PyAVReader(videos[codec]) as reader:
        assert (reader.num_frames, reader.info.height, reader.info.width) == (40, 64, 64)
        frames = reader.get_frames(asked)
    assert frames.shape == (len(asked), 64, 64, 3) and frames.dtype == torch.uint8
    assert [frame_index(f) for f in frames] == asked
    with PyAVReader(videos[codec], seek=False) as reader:
        assert torch.equal(reader.get_frames(asked), frames)


def test_seeking_decodes_only_from_the_key_frame_before(videos, monkeypatch):
    reader = PyAVReader(videos["h264"])
    decoded = []
    original = reader._decoded

    def counting():
        for frame in original():
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(reader, "_decoded", counting)
    assert frame_index(reader.get_frames([37])[0]) == 37
    assert len(decoded) <= 8  # from the key frame at 32, not from 0


@pytest.mark.skipif("torchcodec" not in available_backends(), reason="torchcodec does not import here")
@pytest.mark.parametrize("codec", list(CODECS))
def test_torchcodec_gives_the_same_frames(codec, videos):
    asked = [39, 3, 17, 0]
    with open_video(videos[codec], "torchcodec") as fast, open_video(videos[codec], "pyav") as reference:
        assert fast.num_frames == reference.num_frames
        diff = (fast.get_frames(asked).float() - reference.get_frames(asked).float()).abs()
    assert diff.mean() < 2.0


def test_backend_choice(videos):
    with pytest.raises(ValueError, match="video backend 'decord'"):
        open_video(videos["h264"], "decord")
    with open_video(videos["h264"], "pyav") as reader:
        assert reader.backend == "pyav"
    if "torchcodec" not in available_backends():
        with pytest.raises(ImportError, match="torchcodec"):
            open_video(videos["h264"], "torchcodec")


@pytest.mark.parametrize("key,error,message", [
    ("missing", FileNotFoundError, "video not found"),
    ("truncated_mp4", VideoDecodeError, "cannot open video"),
    ("truncated_webm", VideoDecodeError, "truncated"),
    ("junk", VideoDecodeError, "cannot open video"),
    ("audio_only", VideoDecodeError, r"no video stream \(streams: audio\)"),
])
def test_bad_videos_are_named(key, error, message, videos, tmp_path):
    path = tmp_path / "missing.mp4" if key == "missing" else videos[key]
    with pytest.raises(error, match=message) as info:
        open_video(path, "pyav")
    assert str(path) in str(info.value)


@pytest.mark.skipif("torchcodec" not in available_backends(), reason="torchcodec does not import here")
def test_torchcodec_refuses_a_truncated_webm_as_pyav_does(videos):
    """torchcodec's exact scan counts the frames a cut-short file still has; the header's duration gives it away."""
    with pytest.raises(VideoDecodeError, match=r"truncated.webm: truncated: the header declares 2.50 s"):
        open_video(videos["truncated_webm"], "torchcodec")


def test_truncated_mp4_with_index_up_front(tmp_path):
    import av

    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=16, options={"threads": "1"})
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for pixels in index_frames(40):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(VideoDecodeError, match=r"faststart.mp4: truncated: the header declares 40 frames"):
        PyAVReader(path)


def test_frame_index_out_of_range_is_named(videos):
    with PyAVReader(videos["vp8"]) as reader, pytest.raises(IndexError, match=r"index_vp8.webm: frame index 40 is "
                                                                             r"outside 0..39"):
        reader.get_frames([3, 40])


# ----------------------------------------------------------------------------------------------------------- samplers

def _draws(sampler, n, count=200):
    gen = torch.Generator().manual_seed(0)
    return [sampler(n, True, gen) for _ in range(count)]


def test_dense_training_clips():
    sampler = DenseSampler(num_frames=8, stride=16)
    assert sampler.span == 113
    starts = set()
    for idx in _draws(sampler, 200):
        assert idx == [idx[0] + 16 * k for k in range(8)]
        starts.add(idx[0])
    assert min(starts) == 0 and max(starts) == 200 - 113 and len(starts) > 50
    assert {tuple(i) for i in _draws(sampler, 113, 20)} == {tuple(range(0, 113, 16))}
    assert not sampler.is_short(113) and sampler.is_short(112)


def test_dense_short_videos_repeat_the_last_frame():
    sampler = DenseSampler(num_frames=8, stride=16)
    expected = [0, 16, 32, 48, 49, 49, 49, 49]
    assert all(i == expected for i in _draws(sampler, 50, 10))
    assert sampler(50, False, view=2) == expected
    assert sampler(1, True) == [0] * 8


def test_dense_test_views_span_the_video():
    sampler = DenseSampler(num_frames=8, stride=16, num_views=3)
    slide = 200 - 113
    starts = [sampler(200, False, view=v)[0] for v in range(3)]
    assert starts == [0, round(slide / 2), slide]
    assert sampler(200, False, view=2)[-1] == 199
    assert DenseSampler(4, 2, num_views=1)(20, False) == [6, 8, 10, 12]  # one view: centred (slide 13)


def test_segment_sampler_training_and_test():
    sampler = SegmentSampler(num_segments=8)
    size = (33 - 1) / 8  # 4 frames per segment
    seen = [set() for _ in range(8)]
    for idx in _draws(sampler, 33):
        for i, j in enumerate(idx):
            assert round(size * i) <= j <= round(size * (i + 1))
            seen[i].add(j)
    assert all(len(s) == 5 for s in seen)  # every frame of [4i, 4i + 4] is drawn
    assert sampler(33, False) == [2, 6, 10, 14, 18, 22, 26, 30]  # midpoints
    assert SegmentSampler(4, num_views=2)(17, False, view=1) == [3, 7, 11, 15]


@pytest.mark.parametrize("n,expected", [
    (45, [3, 8, 13, 19, 25, 30, 35, 41]), (20, [1, 3, 6, 8, 11, 13, 15, 18]), (33, [2, 6, 10, 14, 18, 22, 26, 30]),
    (8, [0, 1, 2, 3, 4, 4, 5, 6]), (5, [0, 0, 1, 2, 2, 2, 3, 4]), (3, [0, 0, 0, 1, 1, 1, 2, 2]), (1, [0] * 8),
])
def test_segment_sampler_test_frames_are_the_official_midpoints(n, expected):
    """(round(s * i) + round(s * (i + 1))) // 2 with s = (n - 1) / 8, as the official SSv2 test loader."""
    assert SegmentSampler(num_segments=8)(n, False) == expected


@pytest.mark.parametrize("n", [1, 3, 5, 8, 20, 33, 45, 61])
@pytest.mark.parametrize("num_views", [1, 2, 3])
def test_segment_sampler_test_views_split_the_integer_segments(n, num_views):
    sampler, size = SegmentSampler(num_segments=8, num_views=num_views), (n - 1) / 8
    segments = [(round(size * i), round(size * (i + 1))) for i in range(8)]
    for v in range(num_views):
        assert sampler(n, False, view=v) == [a + int((b - a) * (v + 0.5) / num_views) for a, b in segments]
    if num_views == 1:
        assert sampler(n, False) == [(a + b) // 2 for a, b in segments]


def test_segment_sampler_short_videos():
    sampler = SegmentSampler(num_segments=8)
    assert sampler.is_short(5) and not sampler.is_short(8)
    assert all(0 <= j <= 4 for idx in _draws(sampler, 5, 20) for j in idx)


def test_sampler_settings_are_checked():
    with pytest.raises(ValueError, match=r"DenseSampler\(stride=0\)"):
        DenseSampler(stride=0)
    with pytest.raises(ValueError, match="view 3 is outside 0..2"):
        DenseSampler()(200, False, view=3)
    with pytest.raises(ValueError, match="the video has 0 frames"):
        SegmentSampler()(0, True)


# ----------------------------------------------------------------------------------------------------- clip transforms

def _clip(t=8, h=48, w=64, seed=0):
    frame = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return frame.expand(t, 3, h, w).clone()


def test_kinetics_transforms_shapes_and_one_crop_per_clip():
    recipe = kinetics_recipe(img_size=32, num_frames=8, stride=2)
    torch.manual_seed(0)
    for _ in range(5):
        out = recipe.train_transform(_clip())
        assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
        assert torch.equal(out, out[:1].expand_as(out))  # the same crop and flip for every frame
    test = recipe.test_transform(_clip())
    assert test.shape == (8, 3, 32, 32) and recipe.test_views == 3
    assert -1.2 <= float(test.min()) < -0.5 and 0.5 < float(test.max()) <= 1.2  # mean/std 0.5, bicubic overshoot


def test_short_side_jitter_range():
    resize = ShortSideResize((32, 37))
    torch.manual_seed(0)
    sides = set()
    for _ in range(60):
        h, w = resize(_clip(t=1)).shape[-2:]
        sides.add(h)
        assert w == round(64 * h / 48)
    assert sides == set(range(32, 38))
    assert kinetics_recipe().train_transform.steps[1].high == 258  # round(224 * 1.15)


def test_spatial_crops_sit_at_start_centre_and_end():
    clip = torch.arange(64, dtype=torch.float32).expand(2, 3, 32, 64).clone()  # pixel value = its column
    views = SpatialCrops(32, 3)(clip)
    assert views.shape == (3, 2, 3, 32, 32)
    assert [int(v[0, 0, 0, 0]) for v in views] == [0, 16, 32]
    recipe = ssv2_recipe(img_size=32)
    assert recipe.test_transform(_clip()).shape == (3, 8, 3, 32, 32) and recipe.test_views == 3


@pytest.mark.parametrize("op", list(RAND_AUGMENT_OPS))
def test_every_rand_augment_op_runs_on_clips(op):
    augment = ClipRandAugment(num_ops=1, magnitude=9, prob=1.0, ops=[op])
    torch.manual_seed(1)
    out = augment(_clip(t=3))
    assert out.shape == (3, 3, 48, 64) and out.dtype == torch.uint8
    assert torch.equal(out, out[:1].expand_as(out))


def test_rand_augment_applies_the_same_ops_to_all_frames():
    augment = ClipRandAugment()
    torch.manual_seed(0)
    changed = 0
    for seed in range(12):
        clip = _clip(seed=seed)
        out = augment(clip)
        assert torch.equal(out, out[:1].expand_as(out))
        changed += not torch.equal(out, clip)
    assert changed >= 6
    with pytest.raises(ValueError, match="unknown op"):
        ClipRandAugment(ops=["Blur"])
    with pytest.raises(TypeError, match="uint8"):
        augment(_clip().float())


def test_ssv2_training_transform_has_no_flip_and_fixed_size():
    recipe = ssv2_recipe(img_size=32)
    assert not any("Flip" in type(s).__name__ for s in recipe.train_transform.steps)
    torch.manual_seed(0)
    out = recipe.train_transform(_clip())
    assert out.shape == (8, 3, 32, 32) and torch.equal(out, out[:1].expand_as(out))
    rrc = RandomResizedCrop(32, scale=(2.0, 3.0))  # never fits: the central fallback
    assert rrc.window(48, 64) == (0, 0, 48, 64) and rrc(_clip()).shape == (8, 3, 32, 32)


def test_normalize_needs_float():
    with pytest.raises(TypeError, match="ToFloat"):
        Normalize()(_clip())


# ----------------------------------------------------------------------------------------------------------- datasets

def _kinetics_tree(root: Path, codec: str = "h264", lengths=(40, 40, 40, 6)) -> Path:
    """Videos under class folders whose names hold spaces; list lines `<path> <label>`."""
    classes = ["playing guitar", "riding a bike"]
    lines = []
    for i, n in enumerate(lengths):
        label = i % 2
        rel = f"videos/{classes[label]}/clip {i}{CODECS[codec]}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / rel, index_frames(n), codec)
        lines.append(f"{rel} {label}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root / "train.txt"


def _indices_of(clip: torch.Tensor):
    return [frame_index(f) for f in clip]


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    root = tmp_path_factory.mktemp("k400")
    return root, _kinetics_tree(root)


def test_kinetics_layout_train_and_test_items(kinetics):
    root, list_file = kinetics
    sampler = DenseSampler(num_frames=4, stride=3, num_views=2)
    raw = ClipCompose([ToFloat()])
    train = VideoDataset.from_list(root, list_file, sampler, raw, classes=root / "classes.txt", train=True)
    assert train.classes == ["playing guitar", "riding a bike"] and train.targets == [0, 1, 0, 1]
    torch.manual_seed(0)
    clip, label = train[0]
    assert clip.shape == (4, 3, 64, 64) and clip.dtype == torch.float32 and label == 0
    first = _indices_of(clip)[0]
    assert _indices_of(clip) == [first + 3 * k for k in range(4)] and 0 <= first <= 40 - 10

    test = VideoDataset.from_list(root, list_file, sampler, raw, classes=root / "classes.txt")
    views, label = test[1]
    assert views.shape == (2, 4, 3, 64, 64) and test.num_views == 2 and label == 1
    assert [_indices_of(v) for v in views] == [sampler(40, False, view=v) for v in range(2)]
    short, _ = test[3]  # 6 frames, the clip spans 10: the last frame repeats
    assert [_indices_of(v) for v in short] == [[0, 3, 5, 5]] * 2


def test_kinetics_recipe_items_and_collate(kinetics):
    root, list_file = kinetics
    recipe = kinetics_recipe(img_size=32, num_frames=4, stride=3, test_views=3)
    train = VideoDataset.from_list(root, list_file, recipe.sampler, recipe.train_transform, train=True)
    test = VideoDataset.from_list(root, list_file, recipe.sampler, recipe.test_transform, classes=2)
    assert train.classes == ["0", "1"]
    clips, labels = next(iter(torch.utils.data.DataLoader(train, batch_size=2)))
    views, _ = next(iter(torch.utils.data.DataLoader(test, batch_size=2)))
    assert clips.shape == (2, 4, 3, 32, 32) and labels.tolist() == [0, 1]
    assert views.shape == (2, 3, 4, 3, 32, 32)


def test_probe_reports_short_videos_and_cache_serves_the_same_items(tmp_path):
    list_file = _kinetics_tree(tmp_path, "vp9")
    sampler = DenseSampler(num_frames=4, stride=3, num_views=2)
    plain = VideoDataset.from_list(tmp_path, list_file, sampler, classes=2, probe=True)
    cached = VideoDataset.from_list(tmp_path, list_file, sampler, classes=2, cache=True)
    assert plain.short_videos == cached.short_videos == ["videos/riding a bike/clip 3.webm"]
    assert [i.num_frames for i in plain.info] == [40, 40, 40, 6]
    expected = [plain[i][0] for i in range(4)]
    for path in (tmp_path / "videos").rglob("*.webm"):
        path.unlink()
    assert all(torch.equal(cached[i][0], expected[i]) for i in range(4))


@pytest.mark.parametrize("workers", [0, 2])
def test_padded_clips_are_known_in_the_main_process_for_any_worker_count(kinetics, workers):
    root, list_file = kinetics
    data = VideoDataset.from_list(root, list_file, DenseSampler(num_frames=4, stride=3), classes=2, train=True)
    assert data.padded_clips == [] and data.frame_counts.tolist() == [0, 0, 0, 0]
    for _ in torch.utils.data.DataLoader(data, batch_size=2, num_workers=workers):
        pass
    assert data.frame_counts.tolist() == [40, 40, 40, 6]
    assert data.padded_clips == [("videos/riding a bike/clip 3.mp4", 6)]
    assert data.short_videos == ["videos/riding a bike/clip 3.mp4"]


def _ssv2_tree(root: Path, classes=("Moving something up", "Turning something clockwise"),
               templates=("Moving [something] up", "Turning [something] clockwise", "Moving [something] up")) -> Path:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "labels.json").write_text(json.dumps({name: str(i) for i, name in enumerate(classes)}, indent=1))
    entries = []
    for i, template in enumerate(templates):
        write_video(root / "videos" / f"{100 + i}.webm", index_frames(17 + i), "vp9")
        entries.append({"id": str(100 + i), "label": template.replace("[something]", "a cup"),
                        "template": template, "placeholders": ["a cup"]})
    (root / "train.json").write_text("[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n")
    return root


def test_ssv2_layout_items(tmp_path):
    root = _ssv2_tree(tmp_path)
    sampler = SegmentSampler(num_segments=4)
    raw = ClipCompose([ToFloat()])
    train = VideoDataset.from_ssv2(root / "videos", root / "train.json", root / "labels.json", sampler, raw,
                                   train=True)
    assert train.classes == ["Moving something up", "Turning something clockwise"] and train.targets == [0, 1, 0]
    torch.manual_seed(0)
    clip, _ = train[0]
    idx = _indices_of(clip)
    assert idx == sorted(idx) and all(4 * i <= j <= 4 * i + 4 for i, j in enumerate(idx))
    recipe = ssv2_recipe(img_size=32, num_segments=4)
    test = VideoDataset.from_ssv2(root / "videos", [root / "train.json"] * 2, root / "labels.json", recipe.sampler,
                                  recipe.test_transform)
    views, label = test[4]
    assert len(test) == 6 and views.shape == (3, 4, 3, 32, 32) and label == 1
    spatial = VideoDataset.from_ssv2(root / "videos", root / "train.json", root / "labels.json", sampler,
                                     ClipCompose([ToFloat(), SpatialCrops(32, 3)]))
    views, _ = spatial[0]
    assert views.shape == (3, 4, 3, 32, 32) and torch.equal(views[1], views[1][..., :, :])


def test_ssv2_test_clip_decodes_the_official_segment_midpoints(tmp_path):
    root = _ssv2_tree(tmp_path, templates=("Moving [something] up",))
    write_video(root / "videos" / "100.webm", index_frames(45), "vp9")
    test = VideoDataset.from_ssv2(root / "videos", root / "train.json", root / "labels.json", SegmentSampler(8),
                                  ClipCompose([ToFloat()]))
    views, _ = test[0]
    assert _indices_of(views[0]) == [3, 8, 13, 19, 25, 30, 35, 41]


def test_ssv2_videos_in_the_list_format(tmp_path):
    root = _ssv2_tree(tmp_path)
    (root / "list.txt").write_text("100.webm 0\n101.webm 1\n")
    data = VideoDataset.from_list(root / "videos", root / "list.txt", SegmentSampler(4), classes=2)
    assert data[1][0].shape == (1, 4, 3, 64, 64)


# --------------------------------------------------------------------------------------------------------- bad input

def test_missing_video_names_the_list_and_the_file(kinetics, tmp_path):
    root, list_file = kinetics
    bad = tmp_path / "list.txt"
    bad.write_text(list_file.read_text() + "videos/nowhere/gone.mp4 1\n")
    with pytest.raises(FileNotFoundError, match=r"list.txt: 1 listed video\(s\) not found .* videos/nowhere/gone.mp4"):
        VideoDataset.from_list(root, bad, DenseSampler(4, 3), classes=2)


def test_skip_bad_videos_skips_and_counts_them(kinetics, videos, tmp_path):
    root, list_file = kinetics
    for key in ("truncated_mp4", "truncated_webm", "junk", "audio_only"):
        (root / videos[key].name).write_bytes(videos[key].read_bytes())
    bad = tmp_path / "list.txt"
    extra = ["truncated.mp4 0", "truncated.webm 1", "junk.mp4 0", "audio_only.webm 1", "gone.mp4 0"]
    bad.write_text(list_file.read_text() + "\n".join(extra) + "\n")
    data = VideoDataset.from_list(root, bad, DenseSampler(4, 3), classes=2, skip_bad_videos=True)
    assert len(data) == 4 and len(data.skipped) == 5
    for message, name in zip(data.skipped, ["truncated.mp4", "truncated.webm", "junk.mp4", "audio_only.webm",
                                            "gone.mp4"]):
        assert name in message
    with pytest.raises(FileNotFoundError, match="list.txt: 1 listed video"):
        VideoDataset.from_list(root, bad, DenseSampler(4, 3), classes=2)
    bad.write_text(list_file.read_text() + "\n".join(extra[:-1]) + "\n")
    with pytest.raises(VideoDecodeError, match="truncated.mp4: cannot open video"):
        VideoDataset.from_list(root, bad, DenseSampler(4, 3), classes=2, probe=True)


def test_bad_video_at_load_time_is_named(kinetics, videos, tmp_path):
    root, _ = kinetics
    (root / "junk.mp4").write_bytes(videos["junk"].read_bytes())
    (tmp_path / "list.txt").write_text("junk.mp4 0\n")
    data = VideoDataset.from_list(root, tmp_path / "list.txt", DenseSampler(4, 3), classes=2, train=True)
    with pytest.raises(VideoDecodeError, match="junk.mp4: cannot open video"):
        data[0]


def test_all_videos_bad_is_an_error(kinetics, tmp_path):
    root, _ = kinetics
    (tmp_path / "list.txt").write_text("gone.mp4 0\n")
    with pytest.raises(ValueError, match="no readable video left after skipping 1"):
        VideoDataset.from_list(root, tmp_path / "list.txt", DenseSampler(4, 3), classes=2, skip_bad_videos=True)


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
    root = _ssv2_tree(tmp_path, templates=("Moving [something] up", "Moving [something] down"))
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
    root = _ssv2_tree(tmp_path)
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


def test_label_out_of_range_in_samples(kinetics):
    root, _ = kinetics
    with pytest.raises(ValueError, match=r"my source: video 0 \(x.mp4\) has label 2, outside 0..1"):
        VideoDataset(root, [("x.mp4", 2)], ["a", "b"], DenseSampler(), source="my source")
    with pytest.raises(ValueError, match="my source: no videos"):
        VideoDataset(root, [], ["a"], DenseSampler(), source="my source")
