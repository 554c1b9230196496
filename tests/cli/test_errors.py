"""The `dytune` command prints dytune's own errors as one line with exit code 2, shows tracebacks only with --debug,
keeps the traceback of unexpected errors, writes its result files atomically and prints once under torchrun."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dytune.cli.bench as bench_cli
import dytune.cli.train as engine_cli
from dytune.cli import main
from dytune.utils.errors import RunError


@pytest.mark.slow
def test_a_bad_setting_is_one_line_and_nothing_is_written(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "epochs=2.5", f"output_dir={run}"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "dytune: error: overrides: epochs=2.5: expected an integer >= 1\n"
    assert captured.out == "" and not run.exists()
    assert main(["train", "-c", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"dytune: error: {tmp_path / 'nope.yaml'}: config file not found\n"


@pytest.mark.slow
@pytest.mark.parametrize("error", [ValueError("bad.txt:3: label 9 is outside 0..5"),
                                   FileNotFoundError("x/last: no checkpoint here"),
                                   FileExistsError("x: exists"),
                                   RunError("runs/a is in use by process 12 on host, started ...")])
def test_dytune_errors_are_one_line_with_exit_code_2(monkeypatch, capsys, error):
    def fail(args):
        raise error

    monkeypatch.setattr(engine_cli, "run_eval", fail)
    assert main(["eval", "somewhere"]) == 2
    assert capsys.readouterr().err == f"dytune: error: {error}\n"


@pytest.mark.slow
def test_debug_shows_the_traceback_and_unexpected_errors_keep_theirs(monkeypatch, capsys):
    def fail(args):
        raise ValueError("bad value")

    monkeypatch.setattr(engine_cli, "run_eval", fail)
    for argv in (["--debug", "eval", "x"], ["eval", "x", "--debug"]):
        with pytest.raises(ValueError, match="bad value"):
            main(argv)
    monkeypatch.setenv("DYTUNE_DEBUG", "1")
    with pytest.raises(ValueError, match="bad value"):
        main(["eval", "x"])
    monkeypatch.delenv("DYTUNE_DEBUG")

    def crash(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(engine_cli, "run_eval", crash)
    with pytest.raises(ZeroDivisionError):
        main(["eval", "x"])
    assert "dytune: error" not in capsys.readouterr().err


@pytest.mark.slow
def test_an_os_error_names_its_file(monkeypatch, capsys):
    def fail(args):
        open(Path(args.run_dir) / "missing.json")

    monkeypatch.setattr(engine_cli, "run_eval", fail)
    assert main(["eval", "nowhere"]) == 2
    assert capsys.readouterr().err == "dytune: error: nowhere/missing.json: No such file or directory\n"


@pytest.mark.slow
def test_the_real_command_prints_no_traceback(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "dytune", "train", "skip_bad_images=maybe",
                           f"output_dir={tmp_path / 'run'}"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "dytune: error: overrides: skip_bad_images='maybe': expected true or false\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("rank, printed", [("0", True), ("1", False)])
def test_eval_prints_its_json_on_rank_0_only(monkeypatch, capsys, rank, printed):
    for name in ("dytune.engine.runs", "dytune.engine.trainer"):  # wherever the engine keeps evaluate_run
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        monkeypatch.setattr(module, "evaluate_run", lambda *args: {"acc": 50.0}, raising=False)
    monkeypatch.setenv("RANK", rank)
    assert main(["eval", "somewhere"]) == 0
    out = capsys.readouterr().out
    assert (json.loads(out) == {"acc": 50.0}) if printed else out == ""


@pytest.mark.slow
def test_bench_writes_its_json_atomically(tmp_path, monkeypatch, capsys):
    writes = []
    real = bench_cli.atomic_write

    def recorded(path, write):
        writes.append(Path(path))
        real(path, write)

    monkeypatch.setattr(bench_cli, "atomic_write", recorded)
    monkeypatch.setattr(bench_cli, "run_benchmark", lambda *args, **kwargs: {"rows": []})
    monkeypatch.setattr(bench_cli, "format_table", lambda result: "table")
    out = tmp_path / "bench" / "result.json"
    assert main(["bench", "--out", str(out)]) == 0
    assert writes == [out] and json.loads(out.read_text())["rows"] == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.json"]
    assert main(["bench", "--precision", "fp8", "--out", str(out)]) == 2
    assert "dytune: error: dytune bench: --precision 'fp8'" in capsys.readouterr().err


def test_vtab_summary_writes_its_table_atomically(tmp_path, monkeypatch):
    import dytune.engine.summary as summary

    writes = []
    monkeypatch.setattr(summary, "vtab_table", lambda runs, metric: "| table |")
    monkeypatch.setattr(engine_cli, "atomic_write", lambda path, write: (writes.append(Path(path)), write(str(path))))
    out = tmp_path / "docs" / "vtab.md"
    assert main(["vtab-summary", str(tmp_path), "--out", str(out)]) == 0
    assert writes == [out] and out.read_text() == "| table |\n"


@pytest.mark.slow
def test_vtab_resumes_from_a_checkpoint_and_restarts_attempts_without_one(tmp_path, monkeypatch, capsys):
    from dytune.engine.rundir import write_checkpoint

    out = tmp_path / "runs"
    (out / "done").mkdir(parents=True)
    (out / "done" / "results.json").write_text("{}")
    write_checkpoint(out / "killed", "last", lambda folder: (folder / "train_state.pt").write_bytes(b"x"), epoch=1)
    (out / "failed").mkdir()
    (out / "failed" / "config.yaml").write_text("epochs: 1\n")
    started = {}

    class Finished:
        def __init__(self, cmd, env):
            task = next(c for c in cmd if c.startswith("task=")).partition("=")[2]
            started[task] = cmd

        def poll(self):  # the process has already ended, successfully
            return 0

    import dytune.engine.orchestrator as suite  # the loop dytune vtab delegates to

    monkeypatch.setattr(suite.subprocess, "Popen", Finished)
    tasks = ["done", "killed", "failed", "new"]
    assert main(["vtab", "--tasks", *tasks, "--output", str(out), "--gpus", "0"]) == 0
    assert sorted(started) == ["failed", "killed", "new"]
    assert "--resume" in started["killed"] and "overwrite=true" not in started["killed"]
    assert "overwrite=true" in started["failed"] and "--resume" not in started["failed"]
    assert "--resume" not in started["new"] and "overwrite=true" not in started["new"]
    assert "failed: an earlier attempt left no checkpoint" in capsys.readouterr().out


@pytest.mark.slow
def test_help_config_lists_every_setting_with_its_range(capsys):
    assert main(["train", "--help-config"]) == 0
    out = capsys.readouterr().out
    assert "  epochs (an integer >= 1; default 100): Training epochs" in out
    assert "  overwrite (true or false; default False): " in out and "  lr (a number >= 0 or None; " in out
