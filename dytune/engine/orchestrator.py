"""The one multi-run loop of `dytune suite` and `dytune vtab`: which runs of a plan train, resume or start over, in
this process or one `dytune train` process per run (N at a time, one GPU each, or K at a time shared among the
GPUs or CPU cores), and which failed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import yaml

from ..run_config import TrainConfig
from .results import read_csv, row_keys

__all__ = ["train_plan", "train_command"]


def train_plan(plan: List[Tuple[str, TrainConfig]], results: Optional[Path] = None, gpus: Optional[int] = None,
               jobs: Optional[int] = None,
               label: Callable[[str, TrainConfig], str] = lambda name, cfg: f"{name} {cfg.task} seed {cfg.seed}",
               announce_skipped: bool = False) -> List[str]:
    """Train the runs of `plan` that have not finished, resuming any that were interrupted: the one multi-run loop of
    `dytune suite` and `dytune vtab`.

    A run has finished when its folder holds results.json or `results` (a suite's CSV) holds its row. A run folder
    with run files but no checkpoint (an attempt that died before its first checkpoint) is started over.

    Args:
        plan: (run name, config) pairs, in training order.
        results: A suite's results CSV, whose rows count as finished runs.
        gpus: None: train in this process, one run after another (an error stops the loop). N >= 1: one `dytune
            train` process per run, N at a time, each on its own GPU (CUDA_VISIBLE_DEVICES); 0: such processes one
            after another on CPU. A failed process is reported and the loop goes on.
        jobs: With `gpus`, how many such processes run at a time (default: one per GPU, one on CPU); each new one
            goes to the GPU running the fewest, so a small model can share a GPU, or CPU runs use several cores.
        label: How messages name a run.
        announce_skipped: Print a line for every finished run that is skipped.

    Returns:
        The labels of the runs whose process failed (always empty in this process, where an error propagates).
    """
    from .rundir import RUN_FILES, has_checkpoint
    from .trainer import train

    if jobs is not None and (gpus is None or jobs < 1):
        raise ValueError(f"jobs={jobs}: the number of run processes at a time must be at least 1, and needs gpus "
                         f"(0 for processes on CPU)")
    remembered = row_keys(read_csv(results)) if results is not None else {}
    pending = []
    for i, (name, cfg) in enumerate(plan, start=1):
        out = Path(cfg.output_dir)
        if (out / "results.json").is_file() or (name, cfg.task, cfg.seed) in remembered:
            if announce_skipped:
                print(f"{label(name, cfg)}: done, skipped")
            continue
        resume = has_checkpoint(out)
        if not resume and any((out / f).exists() for f in RUN_FILES):
            print(f"{label(name, cfg)}: an earlier attempt left no checkpoint in {out}; starting it over")
            cfg.overwrite = True
        pending.append((f"[{i}/{len(plan)}] {label(name, cfg)}", label(name, cfg), cfg, resume))
    if gpus is None:
        for heading, _, cfg, resume in pending:
            print(heading)
            train(cfg, resume=resume)
        return []
    width = jobs or max(1, gpus)
    failed: List[str] = []
    running: List[Tuple[str, Optional[int], subprocess.Popen]] = []
    for heading, text, cfg, resume in pending:
        while len(running) >= width:
            failed += _reap(running)
        env = dict(os.environ)
        device = None
        if gpus:
            load = [sum(1 for _, d, _ in running if d == g) for g in range(gpus)]
            device = load.index(min(load))
            env["CUDA_VISIBLE_DEVICES"] = str(device)
        print(heading + (f" on GPU {device}" if device is not None else ""))
        running.append((text, device, subprocess.Popen(train_command(cfg, resume), env=env)))
    while running:
        failed += _reap(running)
    if failed:
        print(f"failed: {', '.join(failed)} (rerun the same command to resume them)")
    return failed


def _reap(running: List[Tuple[str, Optional[int], subprocess.Popen]]) -> List[str]:
    """Wait until one of the `running` processes ends, drop it, and return its label if it failed."""
    while True:
        for i, (text, _, proc) in enumerate(running):
            code = proc.poll()
            if code is not None:
                running.pop(i)
                return [text] if code else []
        time.sleep(0.5)


def train_command(cfg: TrainConfig, resume: bool = False) -> List[str]:
    """The `dytune train` command line that trains `cfg` in a process of its own: every setting as key=value, which
    `TrainConfig.load` reads back exactly (a text as typed when YAML reads it so, JSON otherwise)."""
    def text(value: Any) -> str:
        return value if isinstance(value, str) and yaml.safe_load(value) == value else json.dumps(value)

    settings = [f"{key}={text(value)}" for key, value in cfg.to_dict().items()]
    return [sys.executable, "-m", "dytune", "train", *settings, *(["--resume"] if resume else [])]
