"""VideoDataset on Kinetics and Something-Something trees of real small files: training clips, test views, probing,
caching, short and bad videos."""
import pytest
import torch

pytest.importorskip("av")

from dytune.mini.minivideo import write_video  # noqa: E402
from dytune.tasks.video.datasets import VideoDataset  # noqa: E402
from dytune.tasks.video.decode import VideoDecodeError  # noqa: E402
from dytune.tasks.video.recipes import kinetics_recipe, ssv2_recipe  # noqa: E402
from dytune.tasks.video.samplers import DenseSampler, SegmentSampler  # noqa: E402
from dytune.tasks.video.transforms import ClipCompose, SpatialCrops, ToFloat  # noqa: E402

from .clips import index_frames, indices_of, kinetics_tree, ssv2_tree  # noqa: E402


def test_kinetics_layout_train_and_test_items(kinetics):
    root, list_file = kinetics
    sampler = DenseSampler(num_frames=4, stride=3, num_views=2)
    raw = ClipCompose([ToFloat()])
    train = VideoDataset.from_list(root, list_file, sampler, raw, classes=root / "classes.txt", train=True)
    assert train.classes == ["playing guitar", "riding a bike"] and train.targets == [0, 1, 0, 1]
    torch.manual_seed(0)
    clip, label = train[0]
    assert clip.shape == (4, 3, 64, 64) and clip.dtype == torch.float32 and label == 0
    first = indices_of(clip)[0]
    assert indices_of(clip) == [first + 3 * k for k in range(4)] and 0 <= first <= 40 - 10

    test = VideoDataset.from_list(root, list_file, sampler, raw, classes=root / "classes.txt")
    views, label = test[1]
    assert views.shape == (2, 4, 3, 64, 64) and test.num_views == 2 and label == 1
    assert [indices_of(v) for v in views] == [sampler(40, False, view=v) for v in range(2)]
    short, _ = test[3]  # 6 frames, the clip spans 10: the last frame repeats
    assert [indices_of(v) for v in short] == [[0, 3, 5, 5]] * 2


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
    list_file = kinetics_tree(tmp_path, "vp9")
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


def test_ssv2_layout_items(tmp_path):
    root = ssv2_tree(tmp_path)
    sampler = SegmentSampler(num_segments=4)
    raw = ClipCompose([ToFloat()])
    train = VideoDataset.from_ssv2(root / "videos", root / "train.json", root / "labels.json", sampler, raw,
                                   train=True)
    assert train.classes == ["Moving something up", "Turning something clockwise"] and train.targets == [0, 1, 0]
    torch.manual_seed(0)
    clip, _ = train[0]
    idx = indices_of(clip)
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
    root = ssv2_tree(tmp_path, templates=("Moving [something] up",))
    write_video(root / "videos" / "100.webm", index_frames(45), "vp9")
    test = VideoDataset.from_ssv2(root / "videos", root / "train.json", root / "labels.json", SegmentSampler(8),
                                  ClipCompose([ToFloat()]))
    views, _ = test[0]
    assert indices_of(views[0]) == [3, 8, 13, 19, 25, 30, 35, 41]


def test_ssv2_videos_in_the_list_format(tmp_path):
    root = ssv2_tree(tmp_path)
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


def test_label_out_of_range_in_samples(kinetics):
    root, _ = kinetics
    with pytest.raises(ValueError, match=r"my source: video 0 \(x.mp4\) has label 2, outside 0..1"):
        VideoDataset(root, [("x.mp4", 2)], ["a", "b"], DenseSampler(), source="my source")
    with pytest.raises(ValueError, match="my source: no videos"):
        VideoDataset(root, [], ["a"], DenseSampler(), source="my source")
