"""Small real video files for the video tests: each test video shows frame i as one bright 8 x 8 cell (row i // 8,
column i % 8) on a dark 64 x 64 frame, which survives every codec, so a decoded frame tells which frame it is; and
Kinetics / Something-Something trees of such videos. Needs PyAV when called."""
import json
from pathlib import Path

import numpy as np
import torch

from dytune.mini.minivideo import write_video


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


def audio_only(path: Path) -> Path:
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


def kinetics_tree(root: Path, codec: str = "h264", lengths=(40, 40, 40, 6)) -> Path:
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


def indices_of(clip: torch.Tensor):
    """The frame index each frame of a clip [T, 3, H, W] shows."""
    return [frame_index(f) for f in clip]


def ssv2_tree(root: Path, classes=("Moving something up", "Turning something clockwise"),
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
