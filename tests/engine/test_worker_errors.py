"""dytune's own errors raised in DataLoader workers (num_workers > 0) end `dytune train` / `dytune eval` with one
line and exit code 2, as in the main process; --debug shows the worker's traceback; other errors keep torch's."""
import json
import re
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from dytune.cli import main
from dytune.engine import train
from dytune.engine.loader import DataLoader, WorkerTraceback
from tests.tasks.segmentation.test_task import config as seg_config, write_ade


class Failing(Dataset):
    """Sample i is i, except sample `bad`, which raises `error`."""

    def __init__(self, error: BaseException, bad: int = 5) -> None:
        self.error, self.bad = error, bad

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == self.bad:
            raise self.error
        return torch.tensor(index)


class ShapedError(ValueError):
    """A user error that does not survive pickling (its constructor takes two arguments)."""

    def __init__(self, path: str, shape: tuple) -> None:
        super().__init__(f"{path}: bad shape {shape}")


def _refuse_odd(batch: List[torch.Tensor]) -> torch.Tensor:
    if any(int(x) % 2 for x in batch):
        raise FileNotFoundError("odd.png: no such picture")
    return torch.stack(batch)


def _shown_lines(err: str) -> List[str]:
    """stderr as a terminal shows it: tqdm redraws its bars after carriage returns."""
    return [shown for line in err.split("\n") if (shown := line.rsplit("\r", 1)[-1].strip())]


def _overrides(cfg) -> List[str]:
    return [f"{k}={json.dumps(v)}" for k, v in cfg.to_dict().items()]


def test_a_user_error_in_a_worker_is_raised_as_itself_with_the_worker_traceback_as_cause():
    loader = DataLoader(Failing(FileNotFoundError("5.png: image not found")), batch_size=2, num_workers=2)
    with pytest.raises(FileNotFoundError) as info:
        list(loader)
    assert str(info.value) == "5.png: image not found"
    cause = info.value.__cause__
    assert isinstance(cause, WorkerTraceback)
    assert re.match(r"in DataLoader worker process [01]:\nTraceback \(most recent call last\):", str(cause))
    assert str(cause).endswith("FileNotFoundError: 5.png: image not found\n") and "raise self.error" in str(cause)
    with pytest.raises(FileNotFoundError, match=r"^odd.png: no such picture$"):
        list(DataLoader(Failing(ValueError("unused")), batch_size=1, num_workers=2, collate_fn=_refuse_odd))
    loader = DataLoader(Failing(ValueError("unused"), bad=-1), batch_size=3, num_workers=2)
    assert [batch.tolist() for batch in loader] == [[0, 1, 2], [3, 4, 5], [6, 7]]


@pytest.mark.parametrize("error, raised, message", [
    (TypeError("a bug"), TypeError, "a bug"),
    (ShapedError("mask.png", (2, 3)), RuntimeError, "mask.png: bad shape"),
])
def test_other_worker_errors_keep_torchs_traceback(error, raised, message):
    with pytest.raises(raised) as info:
        list(DataLoader(Failing(error), batch_size=2, num_workers=2))
    text = str(info.value)
    assert text.startswith(f"Caught {type(error).__name__} in DataLoader worker process")
    assert "Original Traceback" in text and message in text
    with pytest.raises(type(error)):  # the main process raises it as it is
        DataLoader(Failing(error), batch_size=2, num_workers=2).dataset[5]


@pytest.mark.slow
def test_a_bad_mask_in_a_worker_is_one_line_in_train_and_eval(tmp_path, capfd):
    ade = write_ade(tmp_path / "ade", counts=(("training", 8), ("validation", 4)))
    run = tmp_path / "run"
    train(seg_config(ade, run, epochs=1))
    capfd.readouterr()
    for split in ("validation", "training"):
        Image.fromarray(np.ones((24, 32), np.uint8), mode="L").save(ade / "annotations" / split / "0001.png")
    expected = {split: f"dytune: error: {ade / 'annotations' / split / '0001.png'} is 32x24 but its image "
                       f"{ade / 'images' / split / '0001.jpg'} is 32x32 (width x height)" for split in
                ("validation", "training")}

    assert main(["eval", str(run), "num_workers=2"]) == 2
    err = capfd.readouterr().err
    assert _shown_lines(err) == [expected["validation"]]
    assert "Caught" not in err and "Traceback" not in err

    assert main(["train", *_overrides(seg_config(ade, tmp_path / "again", epochs=1, num_workers=2))]) == 2
    err = capfd.readouterr().err
    *bars, line = _shown_lines(err)
    assert line == expected["training"] and all(bar.startswith("epoch 1/1: ") for bar in bars)
    assert "Caught" not in err and "Traceback" not in err

    with pytest.raises(ValueError, match=r"0001.png is 32x24") as info:
        main(["eval", str(run), "num_workers=2", "--debug"])
    assert isinstance(info.value.__cause__, WorkerTraceback)
    assert "Traceback (most recent call last)" in str(info.value.__cause__)


@pytest.mark.slow
def test_an_undecodable_video_in_a_worker_is_one_line(tmp_path, capfd):
    pytest.importorskip("av")
    from tests.tasks.video.test_task import config as video_config

    cfg = video_config(tmp_path, epochs=1, num_workers=2)
    video = Path(cfg.data_root) / "videos" / "train clip 3.mp4"
    written = video.read_bytes()
    video.write_bytes(written[:len(written) // 2])
    assert main(["train", *_overrides(cfg)]) == 2
    err = capfd.readouterr().err
    *bars, line = _shown_lines(err)
    assert re.fullmatch(rf"dytune: error: {re.escape(str(video))}: cannot open video \(.+\)", line), err
    assert all(bar.startswith("epoch 1/1: ") for bar in bars)
    assert "Caught" not in err and "Traceback" not in err and "av.error" not in err
