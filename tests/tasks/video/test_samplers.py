"""The Kinetics (dense) and Something-Something (segment) frame samplers."""
import pytest
import torch

from dytune.tasks.video.samplers import DenseSampler, SegmentSampler


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
