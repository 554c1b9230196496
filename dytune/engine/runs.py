"""Finished runs: rebuild a run's model from its folder, evaluate it, and trade accuracy for compute afterwards."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from ..utils import distributed
from ..core.calibrate import budget_curve, dispatchers
from ..core.capacity import plan_capacity, set_capacity
from ..core.convert import execution, is_converted
from ..tasks import Task, build_task
from .build import build_model, load_model_weights, read_run_meta
from ..run_config import TrainConfig
from .evaluation import evaluate
from .loader import DataLoader
from .rundir import read_checkpoint
from .seeding import seed_everything

__all__ = ["LoadedRun", "load_run", "evaluate_run", "calibration_inputs", "budget_curve_run", "CHECKPOINTS",
           "DEFAULT_CHECKPOINT"]

CHECKPOINTS = ("best", "last")
DEFAULT_CHECKPOINT = "last"  # what the run ended with; "best" is picked on the evaluation split itself


class LoadedRun(NamedTuple):
    """A finished run's model with its weights, and what evaluating it needs."""

    cfg: TrainConfig
    task: Task
    env: distributed.DistEnv
    model: nn.Module
    dense_macs: int
    num_classes: int
    classes: Optional[List[str]]
    loader: DataLoader


def load_run(run_dir: Path, overrides: Tuple[str, ...] = (), checkpoint: str = DEFAULT_CHECKPOINT,
             with_data: bool = True) -> LoadedRun:
    """A finished run's model with its `best` or `last` weights and its evaluation loader; sets up the process
    group, which the caller tears down (`distributed.teardown`).

    Args:
        run_dir: The run's output folder.
        overrides: key=value TrainConfig settings (e.g. eval_split=val200).
        checkpoint: "best" or "last".
        with_data: Build the evaluation data and loader (False for prediction on files).
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint={checkpoint!r}: expected one of {', '.join(CHECKPOINTS)}")
    folder = read_checkpoint(Path(run_dir) / checkpoint, legacy_ok=True)
    if not (folder / "train_config.yaml").is_file():
        raise FileNotFoundError(f"{folder}: no checkpoint here (expected {checkpoint}/train_config.yaml)")
    cfg = TrainConfig.load([str(folder / "train_config.yaml")], overrides)
    task = build_task(cfg)
    meta = read_run_meta(folder)
    if meta["task"] != task.name:
        raise ValueError(f"{folder} holds a {meta['task']} model; dataset={cfg.dataset!r} is a {task.name} data set")
    env = distributed.setup(cfg.device)
    seed_everything(cfg.seed)
    num_classes = meta["num_classes"]
    loader = None
    if with_data:
        eval_set = task.build_dataset(train=False)
        if task.num_classes(eval_set) > num_classes:
            raise ValueError(f"{folder} was trained on {num_classes} classes; the evaluation data "
                             f"({cfg.dataset} {cfg.task} {cfg.eval_split}) has {task.num_classes(eval_set)}")
        loader = DataLoader(eval_set, batch_size=task.eval_batch_size(), num_workers=cfg.num_workers,
                            collate_fn=task.collate(),
                            sampler=distributed.ShardSampler(len(eval_set), env.rank, env.world_size))
    model, dense = build_model(cfg, task, num_classes)
    load_model_weights(model, folder)
    model.to(env.device)
    return LoadedRun(cfg, task, env, model, dense, num_classes, meta.get("classes"), loader)


def _evaluate(run: LoadedRun) -> Dict[str, Any]:
    return evaluate(run.model, run.loader, run.env, run.num_classes, run.cfg.precision, run.dense_macs,
                    task=run.task)


def evaluate_run(run_dir: Path, overrides: Tuple[str, ...] = (), checkpoint: str = DEFAULT_CHECKPOINT,
                 execution_mode: Optional[str] = None, capacity: Optional[float] = None,
                 calibration_count: int = 64) -> Dict[str, Any]:
    """Rebuild a finished run's model, load its `best` or `last` weights and evaluate it (`dytune eval`).

    Args:
        run_dir: The run's output folder.
        overrides: key=value TrainConfig settings (e.g. eval_split=val200).
        checkpoint: "best" or "last" (default).
        execution_mode: Evaluate a DyT model in this mode (e.g. "complete": no token skipped) instead of the default
            sparse inference. "capacity" keeps a fixed top-k per image and dispatcher, k measured on
            `calibration_count` training samples (`dytune.plan_capacity`).
        capacity: Capacity execution: the mean keep rate to calibrate to first, or None for each dispatcher's
            keep rate with the trained thresholds.
        calibration_count: Training samples the capacities are measured on.
    """
    try:
        run = load_run(run_dir, overrides, checkpoint)
        if execution_mode is not None and not is_converted(run.model):
            raise ValueError(f"{run_dir}: execution_mode={execution_mode!r} needs a dytune-converted model "
                             f"(dyt*, adaptformer), not method {run.cfg.method!r}")
        if execution_mode == "capacity":
            if not dispatchers(run.model):
                raise ValueError(f"{run_dir}: capacity execution needs token dispatchers (a dyt* run), not method "
                                 f"{run.cfg.method!r}")
            calib = calibration_inputs(run.cfg, run.task, calibration_count).to(run.env.device)
            set_capacity(run.model, plan_capacity(run.model, calib, capacity))
        elif capacity is not None:
            raise ValueError(f"capacity={capacity!r} applies to capacity execution only")
        with nullcontext() if execution_mode is None else execution(run.model, execution_mode):
            return _evaluate(run)
    finally:
        distributed.teardown()


def calibration_inputs(cfg: TrainConfig, task: Task, count: int) -> torch.Tensor:
    """The first `count` training samples, transformed as for evaluation (no augmentation)."""
    plain = type(task)(cfg.replace(augment="none"))
    data = plain.build_dataset(train=True)
    if len(data) == 0:
        raise ValueError(f"{cfg.dataset} {cfg.task}: the training split is empty; nothing to calibrate on")
    return torch.stack([data[i][0] for i in range(min(count, len(data)))])


def budget_curve_run(run_dir: Path, keep_rates_to_try: Sequence[float], overrides: Tuple[str, ...] = (),
                     checkpoint: str = DEFAULT_CHECKPOINT, calibration_count: int = 64, per_layer: bool = False,
                     ) -> List[Dict[str, Any]]:
    """Accuracy against compute of a trained DyT run, without retraining (`dytune eval --budgets`).

    The first row is the model as trained; then the thresholds are calibrated (`dytune.calibrate`) on training
    samples to each keep rate and the evaluation set is scored again. The run's files are not changed.

    Args:
        run_dir: A finished run of a dynamic method (dyt*).
        keep_rates_to_try: Target mean keep rates in [0, 1].
        overrides: key=value TrainConfig settings (e.g. eval_split=val200).
        checkpoint: "best" or "last" (default).
        calibration_count: Training samples the thresholds are calibrated on.
        per_layer: Give every dispatcher the same keep rate (True) or shift one shared threshold, which keeps the
            trained model's preference for which layers compute more (False, the default, as `dytune.calibrate`).
    """
    try:
        run = load_run(run_dir, overrides, checkpoint)
        if not is_converted(run.model) or not dispatchers(run.model):
            raise ValueError(f"{run_dir}: method {run.cfg.method!r} has no token dispatchers; a budget curve needs a "
                             f"dyt* run")

        calib = calibration_inputs(run.cfg, run.task, calibration_count)
        metric = run.task.metric(1).primary
        return budget_curve(run.model, calib, keep_rates_to_try, lambda: {"metric": metric, **_evaluate(run)},
                            per_layer, as_trained=True)
    finally:
        distributed.teardown()
