"""The video task end to end on real video files written here: K400 and SSv2 layouts, train + multi-view eval
that beats chance, MACs per clip against torch's counter, resume, DDP, predict with a skip map over frames; the
views' averaging in `infer` evaluates exactly as the model's own averaging did."""
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("av")

from dytune.cli import main  # noqa: E402
from dytune.core.flops import count_macs  # noqa: E402
from dytune.engine.evaluation import evaluate  # noqa: E402
from dytune.engine.loader import DataLoader  # noqa: E402
from dytune.tasks.video import VideoClassifier, VideoTask  # noqa: E402
from dytune.utils.distributed import DistEnv  # noqa: E402
from dytune.mini.minivideo import write_video  # noqa: E402
from dytune.engine import train  # noqa: E402
from dytune.run_config import TrainConfig  # noqa: E402
from dytune.engine.runs import load_run  # noqa: E402
from tests.conftest import converted, countable  # noqa: E402
from tests.engine.test_engine import _free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
COLOURS = [(230, 40, 40), (40, 90, 230)]
TINY = dict(model="vit_tiny_patch16_224", img_size=32, num_workers=0, batch_size=8, warmup_epochs=0.0,
            model_kwargs=dict(patch_size=8, depth=2, embed_dim=48, num_heads=3), num_frames=4, frame_stride=2,
            test_views=2, lr=3e-3)


def _clip(label: int, rng: np.random.Generator, frames: int = 10) -> np.ndarray:
    """A class-coloured square moving over grey noise."""
    video = rng.integers(90, 140, size=(frames, 32, 32, 3), dtype=np.uint8)
    y, x0 = rng.integers(2, 16, size=2)
    for t in range(frames):
        x = (x0 + t) % 20
        video[t, y:y + 12, x:x + 12] = COLOURS[label]
    return video


def write_k400(root: Path, counts=(("train", 24), ("test", 12))) -> Path:
    rng = np.random.default_rng(0)
    (root / "videos").mkdir(parents=True)
    for split, n in counts:
        lines = []
        for i in range(n):
            label = i % 2
            rel = f"videos/{split} clip {i}.mp4"  # spaces in paths, as Kinetics class folders
            write_video(root / rel, _clip(label, rng), codec="h264")
            lines.append(f"{rel} {label}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("red square\nblue square\n")
    return root


def write_ssv2(root: Path) -> Path:
    rng = np.random.default_rng(1)
    (root / "videos").mkdir(parents=True)
    templates = ["Showing [something] red", "Showing [something] blue"]
    (root / "something-something-v2-labels.json").write_text(json.dumps(
        {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(templates)}))
    ident = 0
    for split, n in (("train", 24), ("validation", 12)):
        items = []
        for i in range(n):
            label = i % 2
            ident += 1
            write_video(root / "videos" / f"{ident}.webm", _clip(label, rng), codec="vp9")
            items.append({"id": str(ident), "template": templates[label], "label": "something", "placeholders": []})
        (root / f"something-something-v2-{split}.json").write_text(json.dumps(items))
    return root


def config(tmp_path: Path, dataset: str = "k400", **kw) -> TrainConfig:
    if dataset == "k400":
        root = tmp_path / "k400"
        if not root.is_dir():
            write_k400(root)
        splits = dict(train_split="train", eval_split="test")
    else:
        root = tmp_path / "ssv2"
        if not root.is_dir():
            write_ssv2(root)
        splits = dict(train_split="train", eval_split="validation")
    return TrainConfig(**{**TINY, **splits, "dataset": dataset, "data_root": str(root), "epochs": 6,
                          "output_dir": str(tmp_path / "run"), **kw})


class _AveragingVideoClassifier(VideoClassifier):
    """The model as it was before `VideoTask.infer` averaged the views: it averaged them itself."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.ndim == 6:
            b, v = clips.shape[:2]
            return super().forward(clips.flatten(0, 1)).view(b, v, -1).mean(1)
        return super().forward(clips)


class _PlainInferVideoTask(VideoTask):
    """The task as it was then: the base class's `infer`, one forward of the model."""

    def infer(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return model(inputs)


def test_infer_averaging_evaluates_as_the_model_averaging_did(tmp_path):
    task = VideoTask(config(tmp_path, img_size=32, num_frames=4, test_views=3))
    model = VideoClassifier(converted("vit_cls"), 5, 4).eval()
    with torch.no_grad():
        for p in model.pool.parameters():
            p.normal_(0, 0.2, generator=torch.Generator().manual_seed(3))
    before = _AveragingVideoClassifier(copy.deepcopy(model.backbone), 5, 4).eval()
    before.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(0)
    views, labels = torch.randn(10, 3, 4, 3, 32, 32, generator=gen), torch.arange(10) % 5
    loader = DataLoader(torch.utils.data.TensorDataset(views, labels), batch_size=4)
    volatile = ("images_per_s", "images_per_s_spread", "threads")

    def run(m, t):
        dense = int(count_macs(m, t.example_input(), forward=t.infer)[0])
        metrics = evaluate(m, loader, DistEnv(), 5, "fp32", dense, progress=False, task=t)
        with torch.no_grad():
            logits = t.infer(m, views)
        return logits, dense, {k: v for k, v in metrics.items() if k not in volatile}

    new_logits, new_dense, new = run(model, task)
    old_logits, old_dense, old = run(before, _PlainInferVideoTask(task.cfg))
    assert new_logits.shape == (10, 5) and torch.equal(new_logits, old_logits)
    assert new_dense == old_dense and new == old
    assert 0.0 < new["keep_rate"] < 1.0 and new["gmacs_per_view"] == new["gmacs"] / 3


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["k400", "ssv2"])
def test_dyt_on_video_trains_and_beats_chance_with_multi_view_testing(tmp_path, dataset):
    results = train(config(tmp_path, dataset))
    final = results["final"]
    assert results["task_type"] == "video" and final["images"] == 12
    assert final["acc"] > 50.0 and final["top5_acc"] == 100.0  # 2 classes: chance is 50 %
    assert len(final["keep_rates"]) == 2 and 0.0 < final["keep_rate"] < 1.0
    assert final["gmacs_per_view"] == pytest.approx(final["gmacs"] / 2)


@pytest.mark.slow
def test_eval_label_beyond_the_training_classes_names_list_file_and_line(tmp_path):
    cfg = config(tmp_path)  # no classes.txt: the class count is the training list's largest label + 1
    root = Path(cfg.data_root)
    (root / "classes.txt").unlink()
    test_list = root / "test.txt"
    lines = test_list.read_text().splitlines()
    lines[2], lines[5] = lines[2].rsplit(maxsplit=1)[0] + " 7", lines[5].rsplit(maxsplit=1)[0] + " 3"
    test_list.write_text("\n".join(lines) + "\n")
    listed = re.escape(str(test_list))
    with pytest.raises(ValueError, match=rf"{listed}:3: label 7 is outside the training split's classes 0..1 "
                                         r"\(the evaluation split has 8 classes, the training split 2\)"):
        train(cfg)


@pytest.mark.slow
def test_padded_clips_are_counted_in_the_log_and_results(tmp_path, capsys):
    cfg = config(tmp_path, epochs=1, num_workers=2)  # clips of 4 frames at stride 2 need 7 frames
    root, rng = Path(cfg.data_root), np.random.default_rng(5)
    write_video(root / "videos" / "train clip 3.mp4", _clip(1, rng, frames=5), codec="h264")
    write_video(root / "videos" / "test clip 0.mp4", _clip(0, rng, frames=6), codec="h264")
    results = train(cfg)
    assert results["padded_clips"] == ["videos/train clip 3.mp4 (5 frames)", "videos/test clip 0.mp4 (6 frames)"]
    assert json.loads((Path(cfg.output_dir) / "results.json").read_text())["padded_clips"] == results["padded_clips"]
    assert ("padded 2 clip(s) shorter than the sampler's 7 frames (the last frame repeats), e.g. "
            "videos/train clip 3.mp4 (5 frames)") in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("method, pool", [("dyt", "tokens"), ("adaptformer", "tokens"), ("linear", "tokens"),
                                          ("dyt", "frames")])
def test_macs_per_clip_match_torch_counter(tmp_path, method, pool):
    run = tmp_path / "run"
    train(config(tmp_path, epochs=1, method=method, video_pool=pool))
    loaded = load_run(run)
    model = countable(loaded.model.eval()).requires_grad_(False)  # the counter hooks leaf inputs that need grad
    views = loaded.task.example_input().normal_()
    import dytune

    ours = int(dytune.count_macs(model, views, norms=False, forward=loaded.task.infer)[0])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        loaded.task.infer(model, views)
    assert ours == counter.get_total_flops() // 2


@pytest.mark.slow
def test_video_run_resumes_and_predicts_with_a_skip_map_over_frames(tmp_path, capsys):
    straight = train(config(tmp_path / "a", epochs=2))
    train(config(tmp_path / "b", epochs=2, stop_after=1))
    resumed = train(config(tmp_path / "b", epochs=2), resume=True)
    assert resumed["final"]["acc"] == pytest.approx(straight["final"]["acc"])
    video = tmp_path / "a" / "k400" / "videos" / "test clip 1.mp4"
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "a" / "run"), str(video), "--skip-maps", str(tmp_path / "maps"),
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["label"] in ("red square", "blue square") and len(row["top"]) == 2
    assert 0.0 < row["keep_rate"] < 1.0 and row["gmacs"] > 0
    assert Path(row["skip_map"]).is_file()


@pytest.mark.slow
def test_two_process_video_run_matches_one_process(tmp_path):
    cfg = config(tmp_path, epochs=1, lr=0.0, min_lr=0.0)
    single = train(cfg)["final"]
    out = tmp_path / "ddp"
    settings = {**cfg.to_dict(), "output_dir": str(out)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "dytune", "train", *[f"{k}={json.dumps(v)}" for k, v in settings.items()]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((out / "results.json").read_text())["final"]
    assert ddp["images"] == single["images"] == 12
    assert ddp["acc"] == pytest.approx(single["acc"]) and ddp["gmacs"] == pytest.approx(single["gmacs"])
