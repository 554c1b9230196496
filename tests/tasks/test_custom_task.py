"""Plug-ins from outside the package: a toy regression task with its own settings, head, loss, two-view inference
and gathered (non-summable) metric, and a toy method with its own setting, trained and evaluated through
`dytune train` / `dytune eval` / `dytune suite`, in one process and under torchrun."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert ddp["median_ae"] == pytest.approx(single["median_ae"], rel=1e-5)  # gathered, not summed
    assert ddp["gmacs"] == pytest.approx(single["gmacs"])


@pytest.mark.slow
def test_plug_in_settings_are_typed_documented_saved_and_read(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TOY, "method=toy-gain-adapter", "epochs=1", "toy_train_images=16", "toy_mirror_view=false",
            "toy_adapter_gain=0.5", "adapter_scale=0.2", f"output_dir={out}"]
    assert main(["train", *args]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["toy_train_images"], saved["toy_mirror_view"], saved["toy_adapter_gain"]) == (16, False, 0.5)

    from dytune.engine.runs import load_run

    run = load_run(out)
    assert len(run.task.build_dataset(train=True)) == 16 and run.cfg.toy_mirror_view is False
    scales = [m.scale for m in run.model.modules() if type(m).__name__ == "Adapter"]
    assert len(scales) == 2 and scales == pytest.approx([0.1, 0.1])
    x = run.task.example_input()
    import dytune
    assert dytune.count_macs(run.model.eval(), x, forward=run.task.infer) == dytune.count_macs(run.model, x)

    capsys.readouterr()
    assert main(["train", "--help-config", "custom_imports=[tests.tasks.toy_task]"]) == 0
    text = capsys.readouterr().out
    assert "toy_brightness settings (task toy_brightness):" in text and "toy_gain settings (toy-gain-adapter):" in text
    assert "toy_train_images (an integer >= 1; default 24)" in text and "toy_adapter_gain (a number > 0" in text
    assert main(["train", *TOY, "toy_train_images=0", f"output_dir={tmp_path / 'bad'}"]) == 2
    assert "toy_train_images=0: expected an integer >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_a_suite_of_plug_ins_runs_with_their_settings_from_yaml(tmp_path):
    base = dict(item.split("=", 1) for item in TOY if not item.startswith(("custom_imports", "model_kwargs")))
    suite = {"base": {**{k: yaml.safe_load(v) for k, v in base.items()}, "custom_imports": ["tests.tasks.toy_task"],
                      "model_kwargs": {"patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3}, "epochs": 1,
                      "toy_train_images": 8},
             "tasks": ["toy"], "seeds": [0], "output": str(tmp_path / "suite"),
             "runs": [{"name": "gain", "method": "toy-gain-adapter", "toy_adapter_gain": 2.0},
                      {"name": "dyt", "method": "dyt", "toy_mirror_view": False}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["suite", str(path)]) == 0
    for name, key, value in (("gain", "toy_adapter_gain", 2.0), ("dyt", "toy_mirror_view", False)):
        saved = yaml.safe_load((tmp_path / "suite" / name / "toy" / "seed0" / "config.yaml").read_text())
        assert saved[key] == value and saved["toy_train_images"] == 8


def test_a_run_saves_the_plug_in_settings_it_reads_or_sets_and_no_others():
    from dytune.engine import TrainConfig

    import tests.tasks.toy_task  # noqa: F401  (registers the toy task and method in this process)

    plain = TrainConfig(dataset="vtab", method="dyt").to_dict()
    assert not {"toy_train_images", "toy_mirror_view", "toy_adapter_gain"} & set(plain)  # loads where no toy is
    toy = TrainConfig(dataset="toy_brightness", method="dyt", toy_adapter_gain=2.0).to_dict()
    assert (toy["toy_train_images"], toy["toy_mirror_view"], toy["toy_adapter_gain"]) == (24, True, 2.0)
