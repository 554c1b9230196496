"""The Task seam from outside: a toy regression task with its own head, loss, two-view inference and metric,
trained and evaluated through `dytune train` / `dytune eval`, in one process and under torchrun."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dytune.cli import main
from dytune.tasks import TASKS, Task, register_task, task_for_dataset

TINY = ["model=vit_tiny_patch16_224", "img_size=32", "num_workers=0", "batch_size=8", "warmup_epochs=0",
        'model_kwargs={"patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3}']
TOY = ["dataset=toy_brightness", "custom_imports=[tests.tasks.toy_task]", "method=dyt", "epochs=2", *TINY]
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_registered_task_trains_and_evaluates_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TOY, f"output_dir={out}"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task_type"] == "toy_brightness" and results["metric"] == "mae"
    final = results["final"]
    assert final["images"] == 10 and 0.0 <= final["mae"] < 1.0 and len(final["keep_rates"]) == 2
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["mae"] == pytest.approx(final["mae"]) and again["gmacs"] == pytest.approx(final["gmacs"])

    # two views per sample: the MACs per sample are those of two forwards
    import dytune
    from dytune.engine.runs import load_run

    run = load_run(out)
    x = run.task.example_input()
    one = dytune.count_macs(run.model.eval(), x)
    assert dytune.count_macs(run.model, x, forward=run.task.infer) == 2 * one


def test_a_task_name_or_dataset_cannot_be_registered_twice():
    task_for_dataset("vtab")
    with pytest.raises(ValueError, match="already registered"):
        register_task(type("Again", (Task,), {"name": "classification", "datasets": ()}))
    with pytest.raises(ValueError, match="already belong to task 'classification'"):
        register_task(type("Other", (Task,), {"name": "other", "datasets": ("vtab",)}))
    assert "other" not in TASKS


def test_unknown_dataset_names_the_registered_ones():
    with pytest.raises(ValueError, match="dataset='nope'.*vtab"):
        task_for_dataset("nope")


def test_two_process_run_of_the_toy_task_matches_one_process(tmp_path):
    common = [*TOY, "epochs=1", "lr=1e-12", "min_lr=0.0"]
    assert main(["train", *common, f"output_dir={tmp_path / 'one'}"]) == 0
    single = json.loads((tmp_path / "one" / "results.json").read_text())["final"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "dytune", "train", *common, f"output_dir={tmp_path / 'ddp'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "results.json").read_text())["final"]
    assert ddp["images"] == single["images"] == 10
    assert ddp["mae"] == pytest.approx(single["mae"], rel=1e-5)
    assert ddp["gmacs"] == pytest.approx(single["gmacs"])
