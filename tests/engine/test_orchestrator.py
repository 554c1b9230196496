"""The one multi-run loop (`orchestrator.train_plan`) that `dytune suite` and `dytune vtab` share: which runs train, resume
or start over, in this process or one `dytune train` process per run (parallel per GPU), and failures."""
from pathlib import Path
from typing import Dict, List

import pytest

import dytune.engine.orchestrator as suite_module
import dytune.engine.trainer as trainer_module
from dytune.cli import main
from dytune.cli import suite as suite_cli
from dytune.engine.orchestrator import train_command, train_plan
from dytune.engine.results import write_csv
from dytune.run_config import TrainConfig


def _plan(tmp_path: Path, states: Dict[str, str]) -> List:
    """One run per entry, its folder in the given state: fresh, finished, interrupted (a checkpoint) or died
    (run files, no checkpoint)."""
    plan = []
    for name, state in states.items():
        out = tmp_path / name
        if state == "finished":
            out.mkdir()
            (out / "results.json").write_text("{}")
        elif state == "interrupted":
            (out / "last").mkdir(parents=True)
        elif state == "died":
            out.mkdir()
            (out / "log.csv").write_text("epoch\n")
        plan.append((name, TrainConfig(task=name, output_dir=str(out))))
    return plan


STATES = {"fresh": "fresh", "done": "finished", "paused": "interrupted", "died": "died"}
EXPECTED = {"fresh": (False, False), "paused": (True, False), "died": (False, True)}  # resume, overwrite


def test_in_process_runs_train_resume_or_start_over(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(trainer_module, "train", lambda cfg, resume: calls.append((cfg.task, resume, cfg.overwrite)))
    assert train_plan(_plan(tmp_path, STATES), label=lambda name, cfg: name, announce_skipped=True) == []
    assert calls == [(name, *EXPECTED[name]) for name in ("fresh", "paused", "died")]
    out = capsys.readouterr().out
    assert "done: done, skipped" in out and f"died: an earlier attempt left no checkpoint in {tmp_path / 'died'}" in out
    assert "[1/4] fresh\n" in out and "[3/4] paused\n" in out


def test_a_suite_results_row_counts_as_finished_and_skips_are_quiet_by_default(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(trainer_module, "train", lambda cfg, resume: calls.append(cfg.task))
    plan = _plan(tmp_path, {"a": "fresh", "b": "fresh"})
    write_csv([{"run": "b", "task": "b", "seed": 0, "acc": 1.0, "keep_rates": []}], tmp_path / "results.csv")
    train_plan(plan, tmp_path / "results.csv")
    assert calls == ["a"]
    assert capsys.readouterr().out == "[1/2] a a seed 0\n"


class _Process:
    """A stand-in for subprocess.Popen: records the command and environment, and the order in which processes start
    and end; a process ends (with the code it is given) the first time it is polled."""

    started: List = []
    codes: Dict[str, int] = {}
    events: List = []

    def __init__(self, cmd: List[str], env: Dict[str, str]):
        self.task = next(a.split("=", 1)[1].strip('"') for a in cmd if a.startswith("task="))
        _Process.started.append((self.task, cmd, env.get("CUDA_VISIBLE_DEVICES")))
        _Process.events.append(("start", self.task))

    def poll(self) -> int:
        _Process.events.append(("end", self.task))
        return _Process.codes.get(self.task, 0)


@pytest.fixture
def processes(monkeypatch):
    monkeypatch.setattr(suite_module.subprocess, "Popen", _Process)
    monkeypatch.setattr(_Process, "started", [])
    monkeypatch.setattr(_Process, "events", [])
    monkeypatch.setattr(_Process, "codes", {"paused": 3})
    return _Process


@pytest.mark.parametrize("gpus, devices", [(0, [None, None, None]), (1, ["0", "0", "0"]), (2, ["0", "1", "0"])])
def test_process_per_run_spreads_over_gpus_and_reports_failures(tmp_path, processes, capsys, gpus, devices):
    failed = train_plan(_plan(tmp_path, STATES), gpus=gpus, label=lambda name, cfg: name)
    assert failed == ["paused"]
    assert [(task, device) for task, _, device in _Process.started] == list(zip(("fresh", "paused", "died"), devices))
    commands = {task: cmd for task, cmd, _ in _Process.started}
    for task, (resume, overwrite) in EXPECTED.items():
        assert ("--resume" in commands[task]) == resume and ("overwrite=true" in commands[task]) == overwrite
    assert "failed: paused (rerun the same command to resume them)" in capsys.readouterr().out


@pytest.mark.parametrize("gpus, jobs, devices, events", [
    (0, None, [None] * 3, ["start fresh", "end fresh", "start paused", "end paused", "start died", "end died"]),
    (0, 2, [None] * 3, ["start fresh", "start paused", "end fresh", "start died", "end paused", "end died"]),
    (1, 3, ["0"] * 3, ["start fresh", "start paused", "start died", "end fresh", "end paused", "end died"]),
    (2, 4, ["0", "1", "0"], ["start fresh", "start paused", "start died", "end fresh", "end paused", "end died"]),
])
def test_jobs_run_several_processes_at_a_time_on_the_least_busy_gpu(tmp_path, processes, gpus, jobs, devices, events):
    assert train_plan(_plan(tmp_path, STATES), gpus=gpus, jobs=jobs, label=lambda name, cfg: name) == ["paused"]
    assert [device for _, _, device in processes.started] == devices
    assert [f"{kind} {task}" for kind, task in processes.events] == events


@pytest.mark.parametrize("gpus, jobs", [(None, 2), (1, 0), (0, -1)])
def test_jobs_need_processes_and_a_positive_count(tmp_path, processes, gpus, jobs):
    with pytest.raises(ValueError, match=f"jobs={jobs}: .* at least 1, and needs gpus"):
        train_plan(_plan(tmp_path, {"a": "fresh"}), gpus=gpus, jobs=jobs)
    assert processes.started == []


def test_suite_command_passes_jobs_to_the_loop(tmp_path, monkeypatch):
    seen = {}

    def fake(*args):
        seen["args"] = args
        return 0

    monkeypatch.setattr(suite_cli.suite, "train_suite", fake)
    assert main(["suite", str(tmp_path / "s.yaml"), "--gpus", "0", "--jobs", "2"]) == 0
    assert seen["args"][-2:] == (0, 2)


@pytest.mark.parametrize("values", [
    {},
    {"task": "010", "data_root": "/data/with space", "lr": None, "tau_final": 0.5, "mean": [0.1, 0.2, 0.3]},
    {"method": "lora", "lora_rank": 2, "model_kwargs": {"depth": 2, "img_size": 32}, "clip_grad": 1e-3,
     "dataset": "ade20k", "seg_inference": "whole", "distill": None},
    {"dataset": "k400", "num_frames": 4, "output_dir": "runs/é", "blr": 0.1 + 0.2},
    {"task": "true", "data_root": " padded ", "checkpoint_path": "", "model": "a: b", "device": "cuda:1"},
    {"task": "null", "data_root": "#x", "model": "[1]", "custom_imports": []},
])
def test_the_process_command_reproduces_the_config_exactly(values):
    cfg = TrainConfig(**values)
    cmd = train_command(cfg)
    assert cmd[1:4] == ["-m", "dytune", "train"]
    assert TrainConfig.load([], cmd[4:]).to_dict() == cfg.to_dict()
    assert train_command(cfg, resume=True)[-1] == "--resume"


def test_vtab_plans_every_task_and_delegates_to_the_loop(tmp_path, monkeypatch):
    seen = {}

    def fake(plan, results=None, gpus=None, jobs=None, label=None, announce_skipped=False):
        seen.update(plan=plan, gpus=gpus, labels=[label(n, c) for n, c in plan], announce=announce_skipped)
        return ["svhn"]

    monkeypatch.setattr(suite_module, "train_plan", fake)
    assert main(["vtab", "epochs=3", "--tasks", "cifar", "svhn", "--output", str(tmp_path), "--gpus", "2"]) == 1
    assert seen["gpus"] == 2 and seen["labels"] == ["cifar", "svhn"] and seen["announce"]
    assert [(c.task, c.epochs, c.output_dir) for _, c in seen["plan"]] == [
        ("cifar", 3, str(tmp_path / "cifar")), ("svhn", 3, str(tmp_path / "svhn"))]
    assert main(["vtab", "epochs=0", "--tasks", "cifar", "--output", str(tmp_path)]) == 2  # checked before training
