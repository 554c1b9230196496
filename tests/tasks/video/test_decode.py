"""Frame-exact decoding with PyAV and torchcodec, and bad files named, on real small files."""
import pytest
import torch

pytest.importorskip("av")

from dytune.tasks.video.decode import PyAVReader, VideoDecodeError, available_backends, open_video  # noqa: E402

from .clips import CODECS, frame_index, index_frames  # noqa: E402


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
