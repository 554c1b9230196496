"""The segmentation task end to end on an ADE20K-layout folder written here: train + eval that beats chance,
sliding-window and whole-image testing, MACs per image against torch's counter, resume, DDP evaluation, predict
with masks, overlays and skip maps, and the bad inputs a user can give."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

import dytune
from dytune.core.checkpoint import trained_state_dict
from dytune.cli import main
from dytune.tasks.segmentation.data import colorize, make_palette
from dytune.engine import train
from dytune.run_config import TrainConfig
from dytune.engine.optim import lr_at
from dytune.engine.runs import evaluate_run, load_run
from dytune.tasks import SegmentationTask, build_task
from dytune.tasks.segmentation.model import default_out_indices
from tests.conftest import countable
from tests.engine.test_engine import _free_port

ROOT = Path(__file__).resolve().parents[3]
CLASSES = ("background", "red square", "blue disc")
TINY = dict(dataset="ade20k", model="vit_tiny_patch16_224", img_size=32, num_workers=0, batch_size=4,
            warmup_epochs=0.0, model_kwargs=dict(patch_size=8, depth=4, embed_dim=48, num_heads=3),
            train_split="training", eval_split="validation", seg_channels=32, seg_scale=[64, 32],
            seg_ratio_range=[1.0, 1.0], lr=3e-2, epochs=8, distill=False)


def _scene(rng: np.random.Generator, size: int = 32):
    """Grey noise with a red square (raw label 2) and a blue disc (raw 3); raw 1 = background, 0 = unlabelled rim."""
    image = rng.integers(90, 150, size=(size, size, 3), dtype=np.uint8)
    raw = np.ones((size, size), np.uint8)
    y, x = rng.integers(0, size - 12, size=2)
    image[y:y + 12, x:x + 12] = (220, 40, 40)
    raw[y:y + 12, x:x + 12] = 2
    cy, cx = rng.integers(8, size - 8, size=2)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 49
    image[disc] = (40, 60, 220)
    raw[disc] = 3
    raw[(yy - cy) ** 2 + (xx - cx) ** 2 == 50] = 0  # an unlabelled rim, as ADE20K's 0
    return image, raw


def write_ade(root: Path, counts=(("training", 48), ("validation", 8)), size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for split, n in counts:
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(n):
            image, raw = _scene(rng, size)
            Image.fromarray(image).save(root / "images" / split / f"{i:04d}.jpg", quality=95)
            Image.fromarray(raw, mode="L").save(root / "annotations" / split / f"{i:04d}.png")
    (root / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    return root


@pytest.fixture(scope="module")
def ade(tmp_path_factory) -> Path:
    return write_ade(tmp_path_factory.mktemp("seg") / "ade")


def config(root: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(**{**TINY, "data_root": str(root), "output_dir": str(out), **kw})


@pytest.fixture(scope="module")
def dyt_run(ade, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "dyt"
    train(config(ade, out, method="dyt"))
    return out


def test_the_dataset_name_picks_the_segmentation_task_and_the_paper_blocks():
    assert isinstance(build_task(TrainConfig(dataset="ade20k")), SegmentationTask)
    assert isinstance(build_task(TrainConfig(dataset="cocostuff")), SegmentationTask)
    assert default_out_indices(12) == (3, 5, 7, 11)
    assert default_out_indices(6) == (1, 2, 3, 5)
    assert default_out_indices(4) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="3-block backbone"):
        default_out_indices(3)


def test_poly_schedule_after_warm_up():
    assert lr_at(0, 100, 10, 1.0, 0.0, "poly") == pytest.approx(0.1)
    assert lr_at(10, 100, 10, 1.0, 0.0, "poly") == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0, 0.0, "poly") == pytest.approx(0.5)
    assert lr_at(55, 100, 10, 1.0, 0.0, "poly", power=2.0) == pytest.approx(0.25)
    assert lr_at(100, 100, 10, 1.0, 0.1, "poly") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule=.*cosine, poly"):
        TrainConfig(lr_schedule="step")


@pytest.mark.slow
def test_dyt_trains_and_clearly_beats_chance(dyt_run):
    results = json.loads((dyt_run / "results.json").read_text())
    final = results["final"]
    assert results["task_type"] == "segmentation" and results["metric"] == "miou"
    assert final["images"] == 8 and final["classes"] == 3 and len(final["iou"]) == 3
    # predicting one class everywhere gives mIoU <= 1/3 of the pixels' share of that class
    assert final["miou"] > 60.0 and final["acc"] > 85.0
    assert len(final["keep_rates"]) == 4 and 0.0 < final["keep_rate"] < 1.0
    assert 0.0 < final["gmacs_pct_dense"] < 100.0


@pytest.mark.slow
@pytest.mark.parametrize("inference", ["slide", "whole"])
def test_sliding_and_whole_image_testing_agree_where_one_window_covers_the_image(dyt_run, inference):
    # seg_scale [64, 32] resizes the 32 px test images to 32: one 32 px window covers them
    metrics = evaluate_run(dyt_run, (f"seg_inference={inference}",))
    reference = json.loads((dyt_run / "results.json").read_text())["final"]
    assert metrics["miou"] == pytest.approx(reference["miou"])


@pytest.mark.slow
@pytest.mark.parametrize("inference, size", [("whole", 32), ("slide", 32), ("slide", 48), ("whole", 48)])
def test_macs_per_image_match_torch_counter(dyt_run, inference, size):
    loaded = load_run(dyt_run, (f"seg_inference={inference}", "seg_stride=16"))
    model = countable(loaded.model.eval()).requires_grad_(False)  # the counter hooks leaf inputs that need grad
    image = torch.randn(1, 3, size, size)
    ours = int(dytune.count_macs(model, image, norms=False, forward=loaded.task.infer)[0])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        loaded.task.infer(model, image)
    assert ours == counter.get_total_flops() // 2


@pytest.mark.slow
def test_sparse_equals_masked_for_the_segmentation_model(dyt_run):
    loaded = load_run(dyt_run)
    model = loaded.model.eval()
    image = torch.randn(2, 3, 48, 40)  # a size the backbone was not built for, not a multiple of the window
    with dytune.execution(model, "masked"):
        masked = loaded.task.infer(model, image)
    sparse = loaded.task.infer(model, image)
    torch.testing.assert_close(sparse, masked, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_a_run_folder_is_a_save_pretrained_folder_that_bench_times(dyt_run):
    """The run's weights load with `dytune.from_pretrained` onto a fresh segmenter, and `dytune bench --checkpoint`
    times that model (its trained thresholds kept, keep rate not recalibrated)."""
    from dytune.bench.runner import BenchSettings, build_models, run_benchmark

    loaded = load_run(dyt_run, checkpoint="last")
    fresh = loaded.task.add_head(loaded.task.create_backbone(loaded.num_classes, pretrained=False),
                                 loaded.num_classes)
    model = dytune.from_pretrained(dyt_run / "last", base=fresh)
    trained = trained_state_dict(loaded.model)  # the random backbones differ; the trained tensors must not
    state = model.state_dict()
    assert trained and all(torch.equal(v, state[k]) for k, v in trained.items())
    cfg = loaded.cfg
    settings = BenchSettings(model=cfg.model, timm_kwargs=dict(cfg.model_kwargs), methods=("dense", "dyt"),
                             checkpoint=str(dyt_run / "last"), keep_rate=None, calibration_images=2,
                             task="segmentation", task_settings={"img_size": cfg.img_size,
                                                                 "seg_channels": cfg.seg_channels})
    models = build_models(settings, torch.device("cpu"))
    timed = models["dyt-mlp"].model.state_dict()
    assert all(torch.equal(v, timed[k]) for k, v in trained.items())  # keep_rate=None: thresholds as trained
    rows = run_benchmark(settings, batch_sizes=(1,), warmup=0, repeats=1, models=models)["rows"]
    assert {r["method"] for r in rows} == {"dense", "dyt-mlp"}


@pytest.mark.slow
def test_a_segmentation_run_resumes_to_the_same_result(ade, tmp_path):
    straight = train(config(ade, tmp_path / "a", method="adaptformer", epochs=2))
    train(config(ade, tmp_path / "b", method="adaptformer", epochs=2, stop_after=1))
    resumed = train(config(ade, tmp_path / "b", method="adaptformer", epochs=2), resume=True)
    assert resumed["final"]["miou"] == pytest.approx(straight["final"]["miou"])


@pytest.mark.slow
def test_pixel_distillation_and_the_baselines_train(ade, tmp_path):
    for method, extra in (("dyt", {"distill": True}), ("linear", {}), ("full", {})):
        final = train(config(ade, tmp_path / method, method=method, epochs=1, **extra))["final"]
        assert 0.0 <= final["miou"] <= 100.0 and final["images"] == 8
    with pytest.raises(ValueError, match="distill=true: method 'adaptformer'"):
        train(config(ade, tmp_path / "bad", method="adaptformer", distill=True, epochs=1))


@pytest.mark.slow
def test_predict_writes_palette_masks_overlays_and_skip_maps(dyt_run, ade, tmp_path, capsys):
    image = ade / "images" / "validation" / "0000.jpg"
    capsys.readouterr()
    assert main(["predict", str(dyt_run), str(image), "--out", str(tmp_path / "pred"), "--skip-maps",
                 str(tmp_path / "maps"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert [name for name, _ in row["top"]][0] == "background" and row["mask_size"] == [32, 32]
    assert sum(share for _, share in row["top"]) == pytest.approx(1.0)
    with Image.open(row["mask"]) as mask:
        assert mask.mode == "P" and mask.size == (32, 32)
        labels = np.asarray(mask)
    assert set(np.unique(labels)) <= {0, 1, 2}
    with Image.open(row["overlay"]) as picture:
        assert picture.size == (32, 32) and picture.mode == "RGB"
    assert Path(row["skip_map"]).is_file() and 0.0 < row["keep_rate"] < 1.0


def _odd_image(folder: Path, width: int, height: int, suffix: str) -> Path:
    """A scene cropped to width x height (not a multiple of the 8 px patch once resized to the 32 px test scale)."""
    image, _ = _scene(np.random.default_rng(width), max(width, height))
    path = folder / f"odd_{width}x{height}.{suffix}"
    Image.fromarray(np.ascontiguousarray(image[:height, :width])).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("width, height, suffix", [(64, 48, "png"), (70, 45, "jpg")])
def test_skip_maps_of_images_whose_test_size_is_not_a_multiple_of_the_patch(dyt_run, tmp_path, capsys, width,
                                                                            height, suffix):
    image = _odd_image(tmp_path, width, height, suffix)
    capsys.readouterr()
    assert main(["predict", str(dyt_run), str(image), "--skip-maps", str(tmp_path / "maps"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["skip_map"] == str(tmp_path / "maps" / f"odd_{width}x{height}.png")
    with Image.open(row["skip_map"]) as picture:
        assert picture.format == "PNG" and picture.size[0] > picture.size[1]
    assert 0.0 < row["keep_rate"] < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("width, height, suffix", [(64, 48, "png"), (70, 45, "jpg")])
def test_predicted_masks_and_overlays_have_the_input_image_size(dyt_run, tmp_path, capsys, width, height, suffix):
    image = _odd_image(tmp_path, width, height, suffix)
    capsys.readouterr()
    assert main(["predict", str(dyt_run), str(image), "--out", str(tmp_path / "pred"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["mask_size"] == [height, width]
    with Image.open(row["mask"]) as mask:
        assert mask.mode == "P" and mask.size == (width, height)
        labels = np.asarray(mask)
    shares = np.bincount(labels.flatten(), minlength=len(CLASSES)) / labels.size
    assert dict(row["top"]) == pytest.approx({CLASSES[k]: shares[k] for k in range(len(CLASSES)) if shares[k] > 0})
    with Image.open(row["overlay"]) as picture, Image.open(image) as original:
        assert picture.size == (width, height)
        # overlay = (image + colours) / 2, rounded: the full-size image and mask come back from it
        colours = colorize(labels, make_palette(len(CLASSES))).astype(int)
        restored = 2 * np.asarray(picture, dtype=int) - colours
        assert np.abs(restored - np.asarray(original.convert("RGB"), dtype=int)).max() <= 2


def test_predicted_logits_are_resized_to_the_image_before_the_argmax(ade, tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.full((2, 8, 3), 128, np.uint8)).save(path)
    task = build_task(config(ade, tmp_path / "x"))
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 2.0]], [[1.3, 1.3]]])  # class 2 wins nowhere at 1 x 2
    restored, image = task.restore_prediction(logits, torch.zeros(3, 1, 2), path)
    assert restored.shape == (3, 2, 8) and image.shape == (3, 2, 8) and image.abs().max() < 0.01
    # bilinear logits: class 2 between the two; nearest labels would give [0, 0, 0, 0, 1, 1, 1, 1]
    assert restored.argmax(0).tolist() == [[0, 0, 0, 2, 2, 1, 1, 1]] * 2


@pytest.mark.slow
def test_checkpoints_of_another_task_or_class_count_are_refused(dyt_run, ade, tmp_path):
    with pytest.raises(ValueError, match="holds a segmentation model"):
        load_run(dyt_run, ("dataset=vtab",), with_data=False)
    more = write_ade(tmp_path / "more", counts=(("validation", 2),))
    (more / "classes.txt").write_text("".join(c + "\n" for c in (*CLASSES, "green ring")))
    with pytest.raises(ValueError, match="trained on 3 classes"):
        evaluate_run(dyt_run, (f"data_root={more}",))


@pytest.mark.slow
def test_bad_segmentation_settings_are_named(ade, tmp_path):
    task = build_task(config(ade, tmp_path / "x", seg_scale=[64]))
    with pytest.raises(ValueError, match=r"seg_scale=\[64\]: expected \[long, short\]"):
        task.build_dataset(train=True)
    with pytest.raises(ValueError, match="seg_stride=40 exceeds the window img_size=32"):
        build_task(config(ade, tmp_path / "x", seg_stride=40)).stride()
    with pytest.raises(ValueError, match="seg_inference='tiles'"):
        config(ade, tmp_path / "x", seg_inference="tiles")
    with pytest.raises(FileNotFoundError, match="images/training"):
        train(config(tmp_path / "empty", tmp_path / "run"))


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(dyt_run):
    single = evaluate_run(dyt_run)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "dytune", "eval", str(dyt_run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(proc.stdout)
    assert ddp["images"] == single["images"] == 8
    assert ddp["miou"] == pytest.approx(single["miou"]) and ddp["pixels"] == single["pixels"]
    assert ddp["gmacs"] == pytest.approx(single["gmacs"])
