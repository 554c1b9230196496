"""The trainer on its run folder: kill -9 at every step of a checkpoint write then resume, one writer per folder,
no fresh run over a finished one, moved folders, and torchrun with fewer evaluation batches than processes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dytune.cli import main
from dytune.engine import train
from dytune.utils.errors import RunError
from tests.engine.fixtures import write_vtab_task
from tests.engine.test_engine import TINY, _free_port, config

ROOT = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked trainer")


def _weights(run: Path):
    return load_file(str(run / "last" / "adapter_model.safetensors"))


# A fresh interpreter that forks one trainer per kill point: forking the pytest process itself is unsafe once
# autograd has run there (its worker threads do not survive a fork).
_ZYGOTE = r"""
import json, os, shutil, signal, sys, traceback
import torch
from dytune.engine import TrainConfig, train
from dytune.engine.trainer import Trainer

torch.set_num_threads(1)
for line in sys.stdin:
    settings, kill_at = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.dup2(2, 1)  # the trainer's prints go to stderr; stdout carries the outcomes
        try:
            count, armed = [0], [False]

            def stepped(real):
                def call(*args, **kwargs):
                    if armed[0]:
                        count[0] += 1
                        if count[0] == kill_at:
                            os.kill(os.getpid(), signal.SIGKILL)
                    return real(*args, **kwargs)
                return call

            for module, name in ((os, "replace"), (os, "fsync"), (os, "chmod"), (shutil, "rmtree")):
                setattr(module, name, stepped(getattr(module, name)))
            save_last = Trainer._save_last

            def arm_in_epoch_2(self, epoch):
                armed[0] = epoch == 1
                save_last(self, epoch)
                armed[0] = False

            Trainer._save_last = arm_in_epoch_2
            train(TrainConfig.from_dict(settings))
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    ok = killed or (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
    print(json.dumps({"killed": killed, "ok": ok}), flush=True)
"""


class _Trainers:
    """Trains 2 epochs in a forked process that SIGKILLs itself at step `kill_at` (renames, fsyncs, mode changes,
    deletions) of the second epoch's `last` checkpoint write; says whether it was killed."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                               "OMP_NUM_THREADS": "1"})

    def killed_at(self, cfg, kill_at: int) -> bool:
        self.proc.stdin.write(json.dumps([cfg.to_dict(), kill_at]) + "\n")
        self.proc.stdin.flush()
        outcome = json.loads(self.proc.stdout.readline())
        assert outcome["ok"], "the trainer failed instead of being killed"
        return outcome["killed"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.mark.slow
@posix_only
def test_kill_at_every_step_of_the_checkpoint_write_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    common = dict(epochs=3, adapter_dropout=0.0)
    straight = _weights(Path(train(config(tmp_path / "straight", **common)) and tmp_path / "straight" / "run"))
    killed_steps = 0
    trainers = _Trainers()
    for kill_at in range(1, 100):
        base = tmp_path / f"k{kill_at}"
        killed = trainers.killed_at(config(base, stop_after=2, **common), kill_at)
        leftovers = [p for p in (base / "run").rglob("*.tmp")]
        results = train(config(base, **common), resume=True)  # the dead writer's lock is taken over
        assert results["epochs_done"] == 3
        resumed = _weights(base / "run")
        assert resumed.keys() == straight.keys()
        assert all(torch.equal(resumed[k], straight[k]) for k in straight), f"killed at step {kill_at}: differs"
        assert not [p for p in (base / "run").rglob("*.tmp")], f"killed at step {kill_at}: temporaries left"
        shutil.rmtree(base)
        if not killed:
            break
        killed_steps += 1 if leftovers or killed else 0
    else:
        pytest.fail("the checkpoint write never finished")
    trainers.close()
    assert killed_steps > 5


@pytest.mark.slow
def test_a_second_writer_is_refused_with_the_holders_process(tmp_path, capsys):
    cfg = config(tmp_path, epochs=1)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from dytune.engine.rundir import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)",
                               cfg.output_dir], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        code = main(["train", *[f"{k}={json.dumps(v)}" for k, v in cfg.to_dict().items()]])
        assert code == 2
        err = capsys.readouterr().err
        assert f"process {holder.pid}" in err and "in use" in err
        assert not (Path(cfg.output_dir) / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(cfg)["epochs_done"] == 1  # the dead holder's lock is taken over


@pytest.mark.slow
def test_a_fresh_run_over_a_finished_one_is_refused_unless_overwrite(tmp_path):
    first = train(config(tmp_path, epochs=1))
    before = (tmp_path / "run" / "results.json").read_text()
    with pytest.raises(RunError, match="--resume, or start over with overwrite=true"):
        train(config(tmp_path, epochs=2, lr=0.5))
    assert (tmp_path / "run" / "results.json").read_text() == before
    assert "lr: 0.5" not in (tmp_path / "run" / "config.yaml").read_text()
    again = train(config(tmp_path, epochs=2, overwrite=True))
    assert again["epochs_done"] == 2 and first["epochs_done"] == 1


@pytest.mark.slow
def test_every_log_writer_is_closed_also_when_a_finished_run_is_called_again(tmp_path, monkeypatch):
    """Defect 8: a finished run returned early and left its TensorBoard writer open."""
    from torch.utils.tensorboard import SummaryWriter

    opened, closed = [], []
    init, close = SummaryWriter.__init__, SummaryWriter.close

    def tracked_init(self, *args, **kwargs):
        opened.append(id(self))
        init(self, *args, **kwargs)

    def tracked_close(self):
        closed.append(id(self))
        close(self)

    monkeypatch.setattr(SummaryWriter, "__init__", tracked_init)
    monkeypatch.setattr(SummaryWriter, "close", tracked_close)
    first = train(config(tmp_path, epochs=1))
    again = train(config(tmp_path, epochs=1), resume=True)  # finished: returns its results without training
    assert again["final"] == first["final"]
    assert opened and set(opened) <= set(closed)


@pytest.mark.slow
def test_a_moved_run_folder_resumes(tmp_path):
    straight = train(config(tmp_path / "a", epochs=2))
    train(config(tmp_path / "b", epochs=2, stop_after=1))
    moved = tmp_path / "b" / "moved"
    shutil.move(str(tmp_path / "b" / "run"), str(moved))
    resumed = train(config(tmp_path / "b", epochs=2, output_dir=str(moved)), resume=True)
    assert resumed["final"]["acc"] == pytest.approx(straight["final"]["acc"])
    a, b = _weights(tmp_path / "a" / "run"), _weights(moved)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_torchrun_with_a_one_image_evaluation_set_trains_and_evaluates(tmp_path):
    root = tmp_path / "vtab"
    write_vtab_task(root, "one", counts={"train800": 12, "val200": 2, "test": 1})
    out = tmp_path / "ddp"
    args = [f"data_root={root}", "task=one", "epochs=2", "method=dyt", f"output_dir={out}",
            *[f"{k}={json.dumps(v)}" for k, v in TINY.items()]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    proc = subprocess.run([*launch, f"--master_port={_free_port()}", "-m", "dytune", "train", *args], env=env,
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["final"]["images"] == 1
    proc = subprocess.run([*launch, f"--master_port={_free_port()}", "-m", "dytune", "eval", str(out)], env=env,
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["images"] == 1  # printed once, by rank 0: stdout is one JSON document
