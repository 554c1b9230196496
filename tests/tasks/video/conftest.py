"""Fixtures of the video tests: index videos in every codec, broken files, a Kinetics tree (see `clips`)."""
import pytest

from dytune.mini.minivideo import write_video

from .clips import CODECS, audio_only, index_frames, kinetics_tree


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
    out["audio_only"] = audio_only(root / "audio_only.webm")
    return out


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    root = tmp_path_factory.mktemp("k400")
    return root, kinetics_tree(root)
