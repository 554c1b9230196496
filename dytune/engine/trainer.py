"""The training loop of every task and method, on one CPU, one GPU or many (torchrun)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler
from tqdm import tqdm

from ..utils import distributed
from ..utils.io import atomic_write
from ..core.convert import set_tau_progress
from ..tasks.classification.data import first_label_outside
from ..utils.errors import RunError
from ..methods import METHODS, build_objective
from ..run_config import RESUME_IGNORED, TrainConfig, differences
from ..utils.runtime import check_precision, peak_memory_mb, synchronize, timing_warning
from ..tasks import build_task
from .build import build_model, load_model_weights, save_model
from .csvlog import CsvLog
from .evaluation import evaluate, extract_features, to_device
from .loader import DataLoader
from .loop import OptimizerStep
from .optim import LrSchedule, param_groups
from .rundir import (RunLock, clean_stale_temporaries, has_checkpoint, prepare_fresh_run, read_checkpoint,
                     write_checkpoint)
from .seeding import rng_state, seed_everything, set_rng_state

__all__ = ["ObjectiveStep", "Trainer", "train", "STATE"]

STATE = "train_state.pt"


class ObjectiveStep(nn.Module):
    """model + objective as one module, so one DDP forward covers every pass the objective makes."""

    def __init__(self, model: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, inputs: Any, targets: Any):
        return self.objective(self.model, inputs, targets)


class Trainer:
    """One training run: data, model, optimiser, schedule, logging, checkpoints and resume.

    Args:
        cfg: The run's configuration.
        resume: Continue from `<output_dir>/last` (its config must match `cfg`).
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        self.cfg = cfg
        self.env = distributed.setup(cfg.device)
        self.out = Path(cfg.output_dir)
        self.method = METHODS[cfg.method]
        self.task = build_task(cfg)
        self._metric = self.task.metric(1)  # what picks the best checkpoint, and which way
        check_precision(self.env.device, cfg.precision)
        self.lock: Optional[RunLock] = None
        self.writer = None
        self.resume_from: Optional[Path] = None
        try:
            self._claim_run_folder(resume)
            self._setup(resume)
        except BaseException:
            self._close()
            raise

    def _claim_run_folder(self, resume: bool) -> None:
        """One writer per run folder, leftovers of killed writes removed, and a fresh run never mixed with an old
        one. Rank 0 checks; every rank learns the outcome, so none waits in a collective for a failed one."""
        cfg, out = self.cfg, self.out
        failure: Optional[BaseException] = None
        if self.env.is_main:
            try:
                self.lock = RunLock(out).acquire()
                clean_stale_temporaries(out)
                if resume:
                    if not has_checkpoint(out):
                        raise FileNotFoundError(f"{out / 'last'}: nothing to resume in {out}")
                    changed = differences(TrainConfig.load([str(out / "config.yaml")]), cfg, ignore=RESUME_IGNORED)
                    if changed:
                        raise ValueError(f"{out} was trained with a different config: {'; '.join(changed)}")
                else:
                    prepare_fresh_run(out, cfg.overwrite)
            except BaseException as e:  # noqa: BLE001  (re-raised below, after the other ranks are told)
                failure = e
        flag = distributed.all_reduce_sum(torch.tensor([0.0 if failure is None else 1.0]))
        if failure is not None:
            raise failure
        if flag.item():
            raise RunError(f"{out}: rank 0 refused the run folder (see its message)")
        if resume:
            self.resume_from = read_checkpoint(out / "last", legacy_ok=True,
                                               log=print if self.env.is_main else (lambda message: None))

    def _setup(self, resume: bool) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.train_set = self.task.build_dataset(train=True)
        self.eval_set = self.task.build_dataset(train=False)
        self.skipped = [msg for d in (self.train_set, self.eval_set) for msg in getattr(d, "skipped", [])]
        if self.skipped and self.env.is_main:
            print(f"skipped {len(self.skipped)} unreadable sample(s), e.g. {self.skipped[0]}")
        self.num_classes = self.task.num_classes(self.train_set)
        self.classes = self.task.class_names(self.train_set)
        self._check_eval_labels()
        self.padded: List[str] = []
        self.model, self.dense_macs = build_model(cfg, self.task, self.num_classes, self.method)
        self.model.to(self.env.device)
        # the objective may run the model twice (dynamic + complete), so DDP wraps model and objective together
        self.train_data: Dataset = self.train_set
        trained: nn.Module = self.model
        cache = self.task.feature_cache(self.model) if self.method.caches_features else None
        self.features_cached = cache is not None
        if cache is not None:
            # the frozen backbone sees the same inputs every epoch: compute their features once, train the head on them
            features, trained = cache
            self.train_data = extract_features(features, self.model, self.train_set, self.env, cfg.batch_size,
                                               cfg.num_workers, cfg.precision)
        if self.env.distributed:
            trained = self.task.distributed(trained)
        self.step_module = ObjectiveStep(trained, build_objective(self.method, self.task, cfg.method_settings()))
        self.ddp = (DistributedDataParallel(self.step_module, find_unused_parameters=True,
                                            device_ids=[self.env.device.index] if self.env.device.type == "cuda" else None)
                    if self.env.distributed else None)
        batches = math.ceil(len(self.train_set) / (cfg.batch_size * self.env.world_size))
        self.steps_per_epoch = math.ceil(batches / cfg.accum_steps)
        global_batch = cfg.batch_size * cfg.accum_steps * self.env.world_size
        self.base_lr = (cfg.lr if cfg.lr is not None else cfg.blr * global_batch / 256) * self.method.lr_scale
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=self.base_lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
        self.start_epoch, self.best = 0, None
        if resume:
            self._load_state(self.resume_from)
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        if self.env.is_main:
            cfg.dump(self.out / "config.yaml")
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.out / "tensorboard"))

    def _check_eval_labels(self) -> None:
        """The evaluation split must not hold more classes than the training split; name its first misfit label."""
        eval_classes = self.task.num_classes(self.eval_set)
        if eval_classes <= self.num_classes:
            return
        message = f"the evaluation split has {eval_classes} classes, the training split {self.num_classes}"
        misfit = first_label_outside(self.eval_set, self.num_classes)
        if misfit is not None:
            message = f"{misfit[0]}: label {misfit[1]} is outside the training split's classes " \
                      f"0..{self.num_classes - 1} ({message})"
        raise ValueError(message)

    def _count_padded(self) -> None:
        """Collect the clips padded so far (videos shorter than the sampler needs, from the datasets' `frame_counts`,
        which every rank and loader worker fills) into `padded`; log when more turned up."""
        found, need = [], 0
        for data in (self.train_set, self.eval_set):
            if getattr(data, "frame_counts", None) is not None:
                distributed.all_reduce_max(data.frame_counts)
                need = data.sampler.min_video_frames
                found += [f"{path} ({n} frames)" for path, n in data.padded_clips]
        if len(found) > len(self.padded) and self.env.is_main:
            tqdm.write(f"padded {len(found)} clip(s) shorter than the sampler's {need} frames (the last frame "
                       f"repeats), e.g. {found[0]}")
        self.padded = found

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def _save_model(self, folder: Path) -> None:
        save_model(self.model, folder, self.cfg, self.num_classes, self.classes, self.task.name)

    def _save_last(self, epoch: int) -> None:
        """`last/`: model and training state as one unit (a new folder with a manifest, switched in by rename)."""
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "epoch": epoch,
                 "best": json.dumps(self.best), "rng": rng_state()}

        def files(folder: Path) -> None:
            self._save_model(folder)
            torch.save(state, folder / STATE)

        write_checkpoint(self.out, "last", files, epoch=epoch + 1)

    def _load_state(self, folder: Path) -> None:
        load_model_weights(self.model, folder)
        state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"]) + 1
        self.best = json.loads(state["best"])
        set_rng_state(state["rng"])

    # ---- loops -------------------------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, train: bool, epoch: int) -> DataLoader:
        env, cfg = self.env, self.cfg
        if train:
            sampler = DistributedSampler(dataset, env.world_size, env.rank, shuffle=True, seed=cfg.seed)
            sampler.set_epoch(epoch)
        else:
            sampler = distributed.ShardSampler(len(dataset), env.rank, env.world_size)
        collate = None if train and self.features_cached else self.task.collate()
        batch_size = cfg.batch_size if train else self.task.eval_batch_size()
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=cfg.num_workers,
                          collate_fn=collate,
                          pin_memory=env.device.type == "cuda", persistent_workers=False,
                          generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        cfg, env = self.cfg, self.env
        step_module = self.ddp or self.step_module
        self.model.train()
        loader = self._loader(self.train_data, True, epoch)
        total_steps = self.steps_per_epoch * cfg.epochs
        schedule = LrSchedule(total_steps, round(cfg.warmup_epochs * self.steps_per_epoch), self.base_lr,
                              cfg.min_lr * self.method.lr_scale, cfg.lr_schedule, cfg.poly_power)
        optimizer_step = OptimizerStep(self.optimizer, schedule, self.model.parameters(), cfg.clip_grad, self.scaler,
                                       env.device, cfg.precision, cfg.accum_steps)
        sums = {"loss": 0.0, "keep_rate": 0.0}
        batches, step_time = 0, 0.0
        if env.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(env.device)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not env.is_main, dynamic_ncols=True)
        self.optimizer.zero_grad(set_to_none=True)
        for i, (inputs, targets) in enumerate(bar):
            step = epoch * self.steps_per_epoch + i // cfg.accum_steps
            if self.method.dynamic:
                set_tau_progress(self.model, step / max(1, total_steps))
            start = time.perf_counter()
            inputs, targets = to_device(inputs, env.device), to_device(targets, env.device)
            try:
                _, parts = optimizer_step(step, lambda: step_module(inputs, targets),
                                          apply=(i + 1) % cfg.accum_steps == 0 or i + 1 == len(loader))
            except FloatingPointError as e:
                raise FloatingPointError(f"epoch {epoch + 1}, step {i}: {e}; stopped, the last good checkpoint is "
                                         f"{self.out / 'last'}") from e
            synchronize(env.device)
            step_time += time.perf_counter() - start
            batches += 1
            sums["loss"] += float(parts["loss"])
            sums["keep_rate"] += float(parts.get("keep_rate", 1.0))
            bar.set_postfix(loss=f"{float(parts['loss']):.3f}", keep=f"{float(parts.get('keep_rate', 1.0)):.2f}",
                            lr=f"{optimizer_step.lr:.2e}")
        reduced = distributed.all_reduce_sum(torch.tensor([sums["loss"], sums["keep_rate"], batches], dtype=torch.float64))
        return {"lr": optimizer_step.lr, "train_loss": reduced[0].item() / reduced[2].item(),
                "train_keep_rate": reduced[1].item() / reduced[2].item(), "step_time_s": step_time / max(1, batches),
                "peak_memory_mb": peak_memory_mb(env.device)}

    def run(self) -> Dict[str, Any]:
        """Train from the current epoch to the end (or for `stop_after` epochs); returns the results."""
        cfg, env = self.cfg, self.env
        if self.start_epoch >= cfg.epochs and (self.out / "results.json").is_file():
            self._close()
            return json.loads((self.out / "results.json").read_text())  # a finished run resumed: nothing to do
        if env.is_main:
            print(f"{cfg.method} on {cfg.dataset}/{cfg.task or cfg.data_root}: {len(self.train_set)} train, "
                  f"{len(self.eval_set)} eval images, {self.num_classes} classes, {self.trainable:,} trainable "
                  f"parameters, lr {self.base_lr:.2e}, {env.world_size} process(es) on {env.device}")
        end = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, self.start_epoch + cfg.stop_after)
        metrics: Dict[str, Any] = {}
        for epoch in range(self.start_epoch, end):
            row = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                metrics = evaluate(self.model, self._loader(self.eval_set, False, epoch), env, self.num_classes,
                                   cfg.precision, self.dense_macs, task=self.task)
                row.update({f"eval_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
                if env.is_main:
                    self._report(epoch, metrics)
                name = self.metric_name
                if self.best is None or self._metric.better(metrics[name], self.best[name]):
                    self.best = {**metrics, "epoch": epoch + 1}
                    if env.is_main:
                        write_checkpoint(self.out, "best", self._save_model, epoch=epoch + 1, keep_previous=False)
            self._count_padded()
            if env.is_main:
                self._log(row, metrics.get("keep_rates"))
                self._save_last(epoch)
        results = {"method": cfg.method, "task_type": self.task.name, "dataset": cfg.dataset, "task": cfg.task,
                   "target_rate": cfg.target_rate,
                   "epochs_done": end, "epochs": cfg.epochs, "trainable_params": self.trainable,
                   "dense_gmacs": self.dense_macs / 1e9, "skipped_images": self.skipped,
                   "padded_clips": self.padded,
                   "metric": self.metric_name, "final": metrics,
                   "best": self.best}
        if env.is_main and end == cfg.epochs:
            atomic_write(self.out / "results.json", lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2)))
        self._close()
        return results

    def _close(self) -> None:
        """Close the log writer and release the run folder (idempotent)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def metric_name(self) -> str:
        return self._metric.primary

    def _report(self, epoch: int, m: Dict[str, Any]) -> None:
        text = f"epoch {epoch + 1}: {self.metric_name} {m[self.metric_name]:.2f}"
        text += f", {m['gmacs']:.3f} GMACs/image ({m.get('gmacs_pct_dense', 100.0):.1f} % of the dense backbone)"
        spread = m.get("images_per_s_spread")
        text += f", {m['images_per_s']:.1f} img/s" + ("" if spread is None else f" ±{100 * spread:.0f} %")
        text += f" ({m['threads']} threads)"
        if "keep_rates" in m:
            text += f", keep rate {m['keep_rate']:.3f} per layer [" + " ".join(f"{r:.2f}" for r in m["keep_rates"]) + "]"
        tqdm.write(text)
        warning = spread is not None and timing_warning("the evaluation's throughput per batch", spread)
        if warning:
            tqdm.write(warning)

    def _log(self, row: Dict[str, Any], layer_rates: Optional[List[float]]) -> None:
        if layer_rates:
            row.update({f"keep_l{i}": r for i, r in enumerate(layer_rates)})
        CsvLog(self.out / "log.csv", key="epoch").append(row)
        for key, value in row.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(key, value, row["epoch"])


def train(cfg: TrainConfig, resume: bool = False) -> Dict[str, Any]:
    """Train (or resume) one run and return its results; `dytune train` in Python."""
    try:
        trainer = Trainer(cfg, resume=resume)
        try:
            return trainer.run()
        finally:
            trainer._close()
    finally:
        distributed.teardown()


