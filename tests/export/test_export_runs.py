"""`dytune export RUN` on tiny trained runs of every task, `dytune eval --execution capacity`, and the README's
ONNX Runtime example."""
import json
from pathlib import Path

import numpy as np
import pytest

from dytune.cli import main
from dytune.engine import train
from dytune.engine.runs import evaluate_run
from tests.engine.test_engine import config as image_config
from tests.tasks.segmentation.test_task import config as seg_config, write_ade
from tests.tasks.video.test_task import config as video_config

ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")


def _export(run: Path, out: Path, *extra: str) -> dict:
    assert main(["export", str(run), "--out", str(out), *extra]) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["verification"]["onnxruntime"]["passed"] if out.suffix == ".onnx" else report["verification"]
    return report


@pytest.mark.slow
def test_readme_example_classifies_an_image_as_dytune_predict_does(tmp_path, capsys):
    cfg = image_config(tmp_path, epochs=1, method="dyt")
    (Path(cfg.data_root) / "toy" / "classes.txt").write_text("red\ngreen\nblue\n")
    train(cfg)
    report = _export(Path(cfg.output_dir), tmp_path / "toy.onnx")
    assert report["routing"] == "capacity" and len(report["capacities"]) == 2 and report["classes"] == [
        "red", "green", "blue"]
    for i in range(4):
        path = Path(cfg.data_root) / "toy" / "images" / "test" / f"{i:06d}.png"
        capsys.readouterr()
        assert main(["predict", cfg.output_dir, str(path), "--json"]) == 0
        expected = json.loads(capsys.readouterr().out)[0]["label"]
        # the README's lines (Deployment), with its file names replaced
        from PIL import Image
        meta = json.load(open(tmp_path / "toy.onnx.json"))
        pre = meta["preprocess"]
        image = Image.open(path).convert("RGB").resize((pre["img_size"],) * 2, Image.BICUBIC)
        x = ((np.asarray(image, np.float32) / 255 - pre["mean"]) / pre["std"]).transpose(2, 0, 1)[None]
        logits = ort.InferenceSession(str(tmp_path / "toy.onnx")).run(None, {"input": x.astype(np.float32)})[0]
        assert meta["classes"][logits[0].argmax()] == expected


@pytest.mark.slow
def test_image_runs_export_with_both_routings_and_evaluate_with_capacity(tmp_path, capsys):
    cfg = image_config(tmp_path, epochs=1, method="dyt")
    train(cfg)
    run = Path(cfg.output_dir)
    budget = _export(run, tmp_path / "budget.onnx", "--capacity", "0.3")
    assert sum(r["capacity"] for r in budget["capacities"]) / 2 == pytest.approx(0.3, abs=0.1)
    assert _export(run, tmp_path / "thr.onnx", "--routing", "threshold")["routing"] == "threshold"
    assert _export(run, tmp_path / "m.pt2", "--format", "exported-program")["verification"]["torch"]["passed"]
    capacity = evaluate_run(run, execution_mode="capacity")
    assert 0.0 <= capacity["acc"] <= 100.0 and len(capacity["keep_rates"]) == 2
    assert main(["export", str(run), "--out", str(tmp_path / "m.pt2")]) == 2
    assert "a onnx export is written to a .onnx file" in capsys.readouterr().err


@pytest.mark.slow
def test_adaptformer_runs_export_and_refuse_a_capacity(tmp_path, capsys):
    cfg = image_config(tmp_path, epochs=1, method="adaptformer")
    train(cfg)
    assert _export(Path(cfg.output_dir), tmp_path / "a.onnx")["routing"] == "none"
    assert main(["export", cfg.output_dir, "--out", str(tmp_path / "b.onnx"), "--capacity", "0.5"]) == 2
    assert "--capacity applies to capacity routing of a dyt* run" in capsys.readouterr().err
    with pytest.raises(ValueError, match="capacity execution needs token dispatchers"):
        evaluate_run(Path(cfg.output_dir), execution_mode="capacity")


@pytest.mark.slow
def test_video_run_exports_with_multi_view_averaging(tmp_path):
    cfg = video_config(tmp_path, epochs=1, method="dyt", test_views=2)
    train(cfg)
    report = _export(Path(cfg.output_dir), tmp_path / "clip.onnx")
    assert report["task"] == "video" and report["input_shape"][1] == 2  # [batch, views, frames, C, H, W]


@pytest.mark.slow
def test_segmentation_run_exports_with_sliding_windows(tmp_path):
    root = write_ade(tmp_path / "ade", counts=(("training", 8), ("validation", 2)))
    cfg = seg_config(root, tmp_path / "run", method="dyt", epochs=1)
    train(cfg)
    report = _export(Path(cfg.output_dir), tmp_path / "seg.onnx")
    assert report["task"] == "segmentation" and report["input_shape"][2:] == [32, 32]
