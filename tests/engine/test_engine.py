"""End-to-end training and evaluation on data written inside the tests."""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dytune.cli import main
from dytune.engine import METHODS, TrainConfig, evaluate_run, train
from dytune.engine.runs import budget_curve_run
from tests.engine.fixtures import write_image_folder, write_vtab_task

TINY = dict(model="vit_tiny_patch16_224", img_size=32, num_workers=0, batch_size=8, warmup_epochs=1,
            model_kwargs=dict(patch_size=8, depth=2, embed_dim=48, num_heads=3))


def config(tmp_path: Path, **kw) -> TrainConfig:
    root = tmp_path / "vtab"
    if not (root / "toy").is_dir():
        write_vtab_task(root, "toy")
    return TrainConfig(**{**TINY, "dataset": "vtab", "data_root": str(root), "task": "toy", "epochs": 2,
                          "output_dir": str(tmp_path / "run"), "vpt_tokens": 2, "lora_rank": 2, **kw})


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_and_evaluates(tmp_path, method):
    results = train(config(tmp_path, method=method))
    final = results["final"]
    assert final["images"] == 12 and 0.0 <= final["acc"] <= 100.0
    assert final["gmacs"] > 0 and results["trainable_params"] > 0
    run = tmp_path / "run"
    assert {"config.yaml", "log.csv", "results.json", "best", "last"} <= {p.name for p in run.iterdir()}
    if METHODS[method].dynamic:
        assert len(final["keep_rates"]) == 2 and 0.0 <= final["keep_rate"] <= 1.0
        assert (run / "last" / "adapter_config.json").is_file()
    again = evaluate_run(run, checkpoint="last")
    assert again["acc"] == pytest.approx(final["acc"]) and again["gmacs"] == pytest.approx(final["gmacs"])
    if METHODS[method].dynamic:
        complete = evaluate_run(run, checkpoint="last", execution_mode="complete")
        assert not complete.get("keep_rates") and complete["gmacs"] >= final["gmacs"]
    elif method == "adaptformer":  # dytune blocks without dispatchers: complete is what it always runs
        assert evaluate_run(run, checkpoint="last", execution_mode="complete")["acc"] == pytest.approx(final["acc"])
    else:
        with pytest.raises(ValueError, match="needs a dytune-converted model"):
            evaluate_run(run, checkpoint="last", execution_mode="complete")


@pytest.mark.slow
def test_trainable_parameters_per_method(tmp_path):
    counts = {m: train(config(tmp_path / m, method=m, epochs=1))["trainable_params"] for m in ("linear", "dyt", "full")}
    assert counts["linear"] < counts["dyt"] < counts["full"]


@pytest.mark.slow
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    straight = train(config(tmp_path / "a", epochs=3))
    cfg = config(tmp_path / "b", epochs=3, stop_after=1)
    first = train(cfg)
    assert first["epochs_done"] == 1 and not (tmp_path / "b" / "run" / "results.json").exists()
    resumed = train(config(tmp_path / "b", epochs=3), resume=True)
    assert train(config(tmp_path / "b", epochs=3), resume=True) == resumed  # resuming a finished run changes nothing
    assert resumed["final"]["acc"] == straight["final"]["acc"]
    assert resumed["final"]["keep_rates"] == straight["final"]["keep_rates"]
    a = (tmp_path / "a" / "run" / "last" / "adapter_model.safetensors").read_bytes()
    b = (tmp_path / "b" / "run" / "last" / "adapter_model.safetensors").read_bytes()
    assert a == b
    log = (tmp_path / "b" / "run" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3"]


@pytest.mark.slow
def test_resume_refuses_a_different_config(tmp_path):
    train(config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match=r"different config: bottleneck: 64 -> 4"):
        train(config(tmp_path, epochs=1, bottleneck=4), resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(config(tmp_path / "empty"), resume=True)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["adaptformer", "linear"])
def test_budget_curve_needs_a_dynamic_run(tmp_path, capsys, method):
    train(config(tmp_path, method=method, epochs=1))
    with pytest.raises(ValueError, match="no token dispatchers"):
        budget_curve_run(tmp_path / "run", [0.5])
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path / "run"), "--budgets", "0.5,2"])
    assert "'0.5,2': expected keep rates in [0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_image_folder_and_cli(tmp_path, capsys):
    root = write_image_folder(tmp_path / "folder")
    out = tmp_path / "run"
    args = ["train", "dataset=folder", f"data_root={root}", "eval_split=val", "epochs=1", f"output_dir={out}",
            "method=adaptformer"] + [f"{k}={json.dumps(v)}" for k, v in TINY.items()]
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["final"]["images"] == 12
    assert "| adaptformer final | 1 |" in capsys.readouterr().out
    assert main(["eval", str(out), "--checkpoint", "best"]) == 0
    assert '"acc"' in capsys.readouterr().out


@pytest.mark.slow
def test_eval_folder_with_a_class_the_training_split_lacks_names_an_image(tmp_path):
    root = write_image_folder(tmp_path / "folder", classes=2)
    extra = root / "val" / "class_9"
    extra.mkdir()
    (root / "val" / "class_0" / "0.png").rename(extra / "0.png")
    cfg = TrainConfig(**{**TINY, "dataset": "folder", "data_root": str(root), "eval_split": "val", "epochs": 1,
                         "output_dir": str(tmp_path / "run")})
    image = re.escape(str(extra / "0.png"))
    with pytest.raises(ValueError, match=rf"{image}: label 2 is outside the training split's classes 0..1 "
                                         r"\(the evaluation split has 3 classes"):
        train(cfg)


@pytest.mark.slow
def test_vtab_commands_run_tasks_and_summarise(tmp_path, capsys):
    for task in ("cifar", "svhn"):
        write_vtab_task(tmp_path / "vtab", task, classes=3)
    overrides = [f"data_root={tmp_path / 'vtab'}", "epochs=1"] + [f"{k}={json.dumps(v)}" for k, v in TINY.items()]
    out = tmp_path / "runs" / "dyt-r0.5"
    assert main(["vtab", *overrides, "--tasks", "cifar", "svhn", "--output", str(out), "--gpus", "0"]) == 0
    assert main(["vtab", *overrides, "--tasks", "cifar", "--output", str(out), "--gpus", "0"]) == 0
    assert "cifar: done, skipped" in capsys.readouterr().out
    assert main(["vtab-summary", str(out), "--out", str(tmp_path / "table.md")]) == 0
    table = (tmp_path / "table.md").read_text()
    assert "| dyt-r0.5 |" in table and "Group mean" in table and "Task mean" in table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process_metrics(tmp_path):
    cfg = config(tmp_path, epochs=1, method="adaptformer", lr=0.0, min_lr=0.0)
    single = train(cfg)["final"]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "dytune", "train", f"data_root={cfg.data_root}", "task=toy", "epochs=1", "method=adaptformer",
           "lr=0.0", "min_lr=0.0", f"output_dir={out}", "vpt_tokens=2", "lora_rank=2"]
    cmd += [f"{k}={json.dumps(v)}" for k, v in TINY.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((out / "results.json").read_text())["final"]
    assert ddp["images"] == single["images"] == 12  # every test image counted once over the two ranks
    assert ddp["acc"] == pytest.approx(single["acc"]) and ddp["gmacs"] == pytest.approx(single["gmacs"])


def test_fashion_mnist_from_the_debian_files(tmp_path):
    from dytune.tasks.classification.data import build_dataset

    try:
        data = build_dataset(TrainConfig(**{**TINY, "dataset": "fashion_mnist"}), train=False)
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST files absent: {e}")
    image, label = data[0]
    assert len(data) == 10000 and image.shape == (3, 32, 32) and 0 <= label < 10 and len(data.classes) == 10


@pytest.mark.slow
def test_linear_probe_on_cached_features_trains_like_the_full_forward(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from dytune.tasks import ClassificationTask

    train(config(tmp_path / "cached", method="linear"))
    monkeypatch.setattr(ClassificationTask, "feature_cache", lambda self, model: None)
    train(config(tmp_path / "full", method="linear"))
    a, b = (load_file(str(tmp_path / d / "run" / "last" / "adapter_model.safetensors")) for d in ("cached", "full"))
    assert a.keys() == b.keys() == {"head.weight", "head.bias"}
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.slow
def test_gradient_accumulation_matches_the_larger_batch(tmp_path):
    from safetensors.torch import load_file

    common = dict(method="adaptformer", adapter_dropout=0.0, epochs=2, task="even")
    for run in ("big", "acc"):  # 32 training images: whole batches of 8 and whole pairs of batches of 4
        write_vtab_task(tmp_path / run / "vtab", "even", counts={"train800": 26, "val200": 6, "test": 8})
    train(config(tmp_path / "big", batch_size=8, **common))
    train(config(tmp_path / "acc", batch_size=4, accum_steps=2, **common))
    a, b = (load_file(str(tmp_path / d / "run" / "last" / "adapter_model.safetensors")) for d in ("big", "acc"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.slow
def test_bf16_autocast_on_cpu(tmp_path):
    results = train(config(tmp_path, precision="bf16", epochs=1, clip_grad=1.0))
    assert results["final"]["images"] == 12 and 0.0 < results["final"]["keep_rate"] < 1.0


@pytest.mark.slow
def test_predict_prints_top_classes_keep_rate_macs_and_writes_skip_maps(tmp_path, capsys):
    cfg = config(tmp_path, epochs=1)
    (Path(cfg.data_root) / "toy" / "classes.txt").write_text("red\ngreen\nblue\n")
    train(cfg)
    image = Path(cfg.data_root) / "toy" / "images" / "test" / "000001.png"
    capsys.readouterr()
    assert main(["predict", cfg.output_dir, str(image), "--top-k", "2", "--skip-maps", str(tmp_path / "maps"),
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["label"] in ("red", "green", "blue") and len(row["top"]) == 2
    assert sum(p for _, p in row["top"]) <= 1.0 and row["top"][0][1] >= row["top"][1][1]
    assert 0.0 <= row["keep_rate"] <= 1.0 and len(row["keep_rates"]) == 2 and row["gmacs"] > 0
    assert Path(row["skip_map"]).is_file()
    assert main(["predict", cfg.output_dir, str(tmp_path / "missing.png")]) == 2
    assert "missing.png: image not found" in capsys.readouterr().err


def test_budget_table_names_the_runs_metric():
    from dytune.cli.train import format_budget_curve

    row = {"target_keep_rate": None, "metric": "mean_per_class_acc", "mean_per_class_acc": 61.5, "acc": 70.0,
           "gmacs": 0.1, "images_per_s": 10.0}
    table = format_budget_curve([row])
    assert "mean_per_class_acc %" in table and "61.50" in table and "70.00" not in table
