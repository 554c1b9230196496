"""Run folders: checkpoints as one unit (a writer killed at every step), one writer per folder, fresh runs that do
not mix with an earlier run, and the clean-up of a killed write's temporaries."""
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Callable, List

import pytest

from dytune.engine.rundir import (LOCK_NAME, MANIFEST_NAME, RunLock, checkpoint_epoch, clean_stale_temporaries,
                                  has_checkpoint, prepare_fresh_run, read_checkpoint, verify_checkpoint,
                                  write_checkpoint)
from dytune.utils.errors import RunError

posix_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked writer")
FILES = ("adapter_model.safetensors", "train_state.pt", "meta/train_config.yaml")


def _content(name: str, epoch: int) -> bytes:
    return f"{name} after epoch {epoch}\n".encode() * 500


def files_of(epoch: int, step: Callable[[], None] = lambda: None) -> Callable[[Path], None]:
    """A checkpoint writer of three files whose bytes name the epoch; `step()` runs before, inside and after each."""
    def write(folder: Path) -> None:
        for name in FILES:
            step()
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            data = _content(name, epoch)
            with path.open("wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                step()
                f.write(data[len(data) // 2:])
        step()
    return write


def epoch_of(folder: Path) -> int:
    """The epoch every file of `folder` comes from; fails on a mix."""
    epochs = {int(json.loads((folder / MANIFEST_NAME).read_text())["epoch"])}
    for name in FILES:
        data = (folder / name).read_bytes()
        matches = [e for e in range(10) if data == _content(name, e)]
        assert len(matches) == 1, f"{folder / name} is not a complete file of one epoch"
        epochs.add(matches[0])
    assert len(epochs) == 1, f"{folder} mixes epochs {sorted(epochs)}"
    return epochs.pop()


def test_a_checkpoint_round_trips_with_its_manifest(tmp_path):
    path = write_checkpoint(tmp_path, "last", files_of(1), epoch=1)
    assert path == tmp_path / "last" and checkpoint_epoch(path) == 1 and epoch_of(path) == 1
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    assert sorted(manifest["files"]) == sorted(FILES)
    write_checkpoint(tmp_path, "last", files_of(2), epoch=2)
    assert read_checkpoint(tmp_path / "last") == tmp_path / "last" and epoch_of(tmp_path / "last") == 2
    assert epoch_of(tmp_path / "last.prev") == 1  # one previous checkpoint is kept
    write_checkpoint(tmp_path, "best", files_of(2), epoch=2, keep_previous=False)
    write_checkpoint(tmp_path, "best", files_of(3), epoch=3, keep_previous=False)
    assert epoch_of(tmp_path / "best") == 3 and not (tmp_path / "best.prev").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "last", "last.prev"]  # no temporaries left


def test_a_failing_writer_leaves_the_checkpoint_alone(tmp_path):
    write_checkpoint(tmp_path, "last", files_of(1), epoch=1)

    def broken(folder: Path) -> None:
        (folder / FILES[0]).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(tmp_path, "last", broken, epoch=2)
    assert epoch_of(read_checkpoint(tmp_path / "last")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    with pytest.raises(RunError, match="wrote no files"):
        write_checkpoint(tmp_path, "last", lambda folder: None, epoch=2)
    with pytest.raises(ValueError, match="plain folder name"):
        write_checkpoint(tmp_path, "../x", files_of(1), epoch=1)


def _write_killed_at(parent: Path, kill_at: int, epoch: int, keep_previous: bool) -> bool:
    """Write a checkpoint in a forked process that SIGKILLs itself at step `kill_at` (file writes, fsyncs, renames,
    deletions); returns whether it was killed (False: the write finished first)."""
    pid = os.fork()
    if pid == 0:  # the writer
        try:
            count = [0]

            def step() -> None:
                count[0] += 1
                if count[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

            def stepped(real: Callable) -> Callable:
                return lambda *args, **kwargs: (step(), real(*args, **kwargs))[1]

            for module, name in ((os, "replace"), (os, "fsync"), (os, "chmod"), (shutil, "rmtree")):
                setattr(module, name, stepped(getattr(module, name)))
            write_checkpoint(parent, "last", files_of(epoch, step), epoch, keep_previous=keep_previous)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        assert os.WEXITSTATUS(status) == 0, "the writer failed instead of being killed"
        return False
    assert os.WTERMSIG(status) == signal.SIGKILL
    return True


@posix_only
@pytest.mark.parametrize("keep_previous", [True, False])
def test_kill_at_every_step_of_a_checkpoint_write_leaves_one_complete_checkpoint(tmp_path, keep_previous):
    outcomes: List[int] = []
    for kill_at in range(1, 200):
        run = tmp_path / f"kill{kill_at}"
        write_checkpoint(run, "last", files_of(0), epoch=0)
        write_checkpoint(run, "last", files_of(1), epoch=1)  # last = epoch 1, last.prev = epoch 0
        killed = _write_killed_at(run, kill_at, epoch=2, keep_previous=keep_previous)
        messages: List[str] = []
        folder = read_checkpoint(run / "last", log=messages.append)
        epoch = epoch_of(folder)
        assert epoch in (1, 2), f"killed at step {kill_at}: read epoch {epoch}"
        assert (folder == run / "last") != bool(messages), "a fall-back is reported, and only a fall-back"
        outcomes.append(epoch)
        # the next start cleans up and the run goes on: the next checkpoint is complete and the newest
        clean_stale_temporaries(run)
        assert not [p for p in run.rglob("*.tmp")], f"killed at step {kill_at}: temporaries left"
        write_checkpoint(run, "last", files_of(3), epoch=3, keep_previous=keep_previous)
        assert epoch_of(read_checkpoint(run / "last")) == 3
        shutil.rmtree(run)
        if not killed:
            break
    else:
        pytest.fail("the write never finished")
    assert len(outcomes) > 10 and outcomes[0] == 1 and outcomes[-1] == 2
    assert outcomes == sorted(outcomes), "once the new checkpoint is in place it stays"


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    write_checkpoint(tmp_path, "last", files_of(1), epoch=1)
    write_checkpoint(tmp_path, "last", files_of(2), epoch=2)
    weights = tmp_path / "last" / FILES[0]
    weights.write_bytes(weights.read_bytes()[:-1] + b"X")
    messages: List[str] = []
    folder = read_checkpoint(tmp_path / "last", log=messages.append)
    assert folder == tmp_path / "last.prev" and epoch_of(folder) == 1
    assert len(messages) == 1 and "adapter_model.safetensors does not match its checksum" in messages[0]
    assert "using the previous complete checkpoint" in messages[0] and "(epoch 1)" in messages[0]
    with pytest.raises(RunError, match="does not match its checksum"):
        verify_checkpoint(tmp_path / "last")
    (tmp_path / "last.prev" / FILES[1]).write_bytes(b"")
    with pytest.raises(RunError, match=r"(?s)last: .*checksum.*previous checkpoint is not usable.*train_state.pt has 0 "
                                       r"bytes"):
        read_checkpoint(tmp_path / "last")


@pytest.mark.parametrize("damage, message", [
    (lambda last: (last / MANIFEST_NAME).write_text('{"format": "dytune-che'), "not a dytune checkpoint manifest"),
    (lambda last: (last / FILES[2]).unlink(), "meta/train_config.yaml is missing"),
    (lambda last: shutil.rmtree(last), "last: not found"),
])
def test_damaged_checkpoints_are_named(tmp_path, damage, message):
    write_checkpoint(tmp_path, "last", files_of(1), epoch=1)
    damage(tmp_path / "last")
    with pytest.raises((RunError, FileNotFoundError), match=message if "not found" not in message else "no checkpoint"):
        read_checkpoint(tmp_path / "last")
    write_checkpoint(tmp_path, "other", files_of(1), epoch=1)
    write_checkpoint(tmp_path, "other", files_of(2), epoch=2)
    damage(tmp_path / "other")
    messages: List[str] = []
    assert epoch_of(read_checkpoint(tmp_path / "other", log=messages.append)) == 1
    assert message.replace("last", "other") in messages[0]


def test_a_checkpoint_without_manifest_is_refused_unless_legacy_is_allowed(tmp_path):
    legacy = tmp_path / "last"
    legacy.mkdir()
    (legacy / "train_state.pt").write_bytes(b"old")
    with pytest.raises(RunError, match=r"last: no manifest.json, so its files cannot be verified"):
        read_checkpoint(legacy)
    messages: List[str] = []
    assert read_checkpoint(legacy, legacy_ok=True, log=messages.append) == legacy
    assert "loading it unverified" in messages[0]
    with pytest.raises(FileNotFoundError, match="nowhere: no checkpoint here"):
        read_checkpoint(tmp_path / "nowhere")


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path):
    write_checkpoint(tmp_path, "last", files_of(1), epoch=1)
    stale = [tmp_path / ".last.abc123.tmp", tmp_path / "last" / ".train_state.pt.k2j3.tmp",
             tmp_path / ".results.json.x.tmp"]
    stale[0].mkdir()
    (stale[0] / "adapter_model.safetensors").write_bytes(b"half")
    stale[1].write_bytes(b"half")
    stale[2].write_text("{")
    (tmp_path / "notes.tmp").write_text("the user's")
    assert sorted(clean_stale_temporaries(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale) and (tmp_path / "notes.tmp").exists()
    assert epoch_of(read_checkpoint(tmp_path / "last")) == 1
    assert clean_stale_temporaries(tmp_path / "missing") == []


def test_a_fresh_run_does_not_mix_with_an_earlier_run(tmp_path):
    run = tmp_path / "run"
    prepare_fresh_run(run, overwrite=False)  # nothing there yet
    run.mkdir()
    prepare_fresh_run(run, overwrite=False)
    (run / "notes.txt").write_text("the user's")
    (run / "config.yaml").write_text("epochs: 1\n")
    with pytest.raises(RunError, match=r"run already holds a run \(config.yaml\); it has no checkpoint to resume; "
                                       r"start over with overwrite=true"):
        prepare_fresh_run(run, overwrite=False)
    (run / "results.json").write_text("{}")
    write_checkpoint(run, "last", files_of(1), epoch=1)
    write_checkpoint(run, "best", files_of(1), epoch=1)
    with pytest.raises(RunError, match=r"run already holds a run \(results.json, config.yaml, last, best\); continue "
                                       r"it with --resume, or start over with overwrite=true"):
        prepare_fresh_run(run, overwrite=False)
    with RunLock(run):
        prepare_fresh_run(run, overwrite=True)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME, "notes.txt"]
    assert not has_checkpoint(run)


@posix_only
def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the first writer: takes the lock and holds it until told (or killed)
        try:
            os.close(ready_r), os.close(hold_w)
            with RunLock(run):
                os.write(ready_w, b"1")
                os.read(hold_r, 1)
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(ready_w), os.close(hold_r)
    try:
        assert os.read(ready_r, 1) == b"1"
        owner = json.loads((run / LOCK_NAME).read_text())
        assert owner["pid"] == pid and owner["host"] and owner["started"]
        with pytest.raises(RunError, match=rf"run is in use by process {pid} on .*started .*; wait for it to end, or "
                                           r"use another output_dir"):
            RunLock(run).acquire()
        os.kill(pid, signal.SIGKILL)  # dies holding the lock: the file stays, the kernel releases the lock
        os.waitpid(pid, 0)
        assert (run / LOCK_NAME).exists()
        messages: List[str] = []
        with RunLock(run, log=messages.append) as lock:
            assert lock.held and json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
            assert f"taking over the lock of process {pid}" in messages[0] and "no longer running" in messages[0]
            with pytest.raises(RunError, match=rf"in use by process {os.getpid()} .*\(this process\)"):
                RunLock(run).acquire()
        assert not (run / LOCK_NAME).exists() and not lock.held
        with RunLock(run, log=messages.append):  # released cleanly: no take-over message
            pass
        assert len(messages) == 1
    finally:
        os.close(ready_r), os.close(hold_w)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@posix_only
def test_the_lock_is_released_when_the_holder_exits_normally(tmp_path):
    pid = os.fork()
    if pid == 0:
        try:
            with RunLock(tmp_path):
                pass
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock(tmp_path).acquire().release()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
