"""Training and evaluation loops for every method, on one CPU, one GPU or many (torchrun)."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
import resource
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset
from tqdm import tqdm

from ..bench.accuracy import sweep_keep_rates
from ..calibrate import dispatchers
from ..checkpoint import atomic_write, load_backbone_weights, load_trained_state, save_pretrained, trained_state_dict
from ..convert import execution, keep_rates, set_tau_progress
from ..data.datasets import MEAN_PER_CLASS, build_dataset, num_classes_of
from ..flops import count_macs, dynamic_macs
from . import distributed
from .config import TrainConfig, differences
from .methods import METHODS, build_objective

WEIGHTS = "adapter_model.safetensors"
STATE = "train_state.pt"


def build_model(cfg: TrainConfig, num_classes: int) -> Tuple[nn.Module, int]:
    """The timm backbone with its weights and the method applied, and the backbone's dense MACs per image."""
    kwargs = dict(cfg.model_kwargs)
    kwargs.setdefault("img_size", cfg.img_size)
    model = timm.create_model(cfg.model, pretrained=cfg.pretrained and not cfg.checkpoint_path,
                              num_classes=num_classes, **kwargs)
    if cfg.checkpoint_path:
        load_backbone_weights(model, cfg.checkpoint_path)
    dense = int(count_macs(model.eval(), torch.zeros(1, 3, cfg.img_size, cfg.img_size))[0])
    return METHODS[cfg.method].apply(model, cfg), dense


def save_model(model: nn.Module, folder: Path, cfg: TrainConfig, num_classes: int) -> None:
    """Trained tensors only: the core's save_pretrained format for DyT-family models, the same safetensors file for
    the baselines; plus the run's config and class count to rebuild the model."""
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "dytune_config"):
        save_pretrained(model, folder)
    else:
        state = trained_state_dict(model)
        atomic_write(folder / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write(folder / "run_meta.json", lambda tmp: Path(tmp).write_text(json.dumps({"num_classes": num_classes})))
    cfg.dump(folder / "train_config.yaml")


def load_model_weights(model: nn.Module, folder: Path) -> None:
    file = folder / WEIGHTS
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no model weights in this checkpoint folder")
    load_trained_state(model, load_file(str(file)), source=str(file))


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms, tokens and position embeddings (all <= 1-D or named so)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("cls_token", "reg_token", "dist_token", "pos_embed", "prompts"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, warmup: int, base: float, final: float) -> float:
    """Linear warm-up from 0, then half-cosine from base to final, per iteration."""
    if step < warmup:
        return base * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision=fp16 needs CUDA; use bf16 on CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
             "python_pos": random.getstate()[2] if random.getstate()[2] is not None else -1,
             "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
             "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    pos = int(state["python_pos"])
    random.setstate((3, tuple(int(v) for v in state["python"]), None if pos < 0 else pos))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, env: distributed.DistEnv, num_classes: int, precision: str,
             dense_macs: Optional[int] = None, progress: bool = True) -> Dict[str, Any]:
    """Accuracy, mean per-class accuracy, keep rate per dispatched sub-block and MACs per image over the whole
    evaluation set (summed over all processes), and the inference throughput of the timed forwards."""
    model.eval()
    device = env.device
    per_class = torch.zeros(2, num_classes, dtype=torch.float64, device=device)  # correct, total
    keep_sum: Optional[torch.Tensor] = None
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # images, macs, forward seconds
    static: Optional[int] = None
    for images, targets in tqdm(loader, desc="eval", leave=False, disable=not (progress and env.is_main)):
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast(device, precision):
            logits = model(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        totals[2] += time.perf_counter() - start
        if static is None:  # everything outside the dynamic blocks costs the same for every image
            static = int(count_macs(model, images[:1])[0] - dynamic_macs(model, 1)[0])
            with autocast(device, precision):
                logits = model(images)
        macs = static + dynamic_macs(model, images.shape[0])
        rates = [r * images.shape[0] for r in keep_rates(model)] if hasattr(model, "dytune_config") else []
        if rates:
            batch_rates = torch.tensor(rates, dtype=torch.float64, device=device)
            keep_sum = batch_rates if keep_sum is None else keep_sum + batch_rates
        pred = logits.argmax(dim=-1)
        per_class[1].index_add_(0, targets, torch.ones_like(targets, dtype=torch.float64))
        per_class[0].index_add_(0, targets, (pred == targets).double())
        totals[0] += images.shape[0]
        totals[1] += macs.sum().item()
    distributed.all_reduce_sum(per_class)
    distributed.all_reduce_sum(totals)
    if keep_sum is not None:
        distributed.all_reduce_sum(keep_sum)
    images_seen = totals[0].item()
    present = per_class[1] > 0
    metrics = {
        "images": int(images_seen),
        "acc": 100.0 * per_class[0].sum().item() / max(1.0, images_seen),
        "mean_per_class_acc": 100.0 * (per_class[0][present] / per_class[1][present]).mean().item(),
        "gmacs": totals[1].item() / max(1.0, images_seen) / 1e9,
        "images_per_s": images_seen / max(1e-9, totals[2].item()),
    }
    if dense_macs:
        metrics["gmacs_pct_dense"] = 100.0 * metrics["gmacs"] * 1e9 / dense_macs
    if keep_sum is not None:
        layer_rates = (keep_sum / images_seen).tolist()
        metrics["keep_rates"] = layer_rates
        metrics["keep_rate"] = sum(layer_rates) / len(layer_rates)
    return metrics


def caches_features(cfg: TrainConfig, head: Any) -> bool:
    """Linear probing without augmentation trains on features computed once."""
    return cfg.method == "linear" and cfg.augment == "none" and isinstance(head, nn.Module)


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Dataset, env: distributed.DistEnv, cfg: TrainConfig) -> TensorDataset:
    """Pre-logit features (pooled, normalised, as the head receives them) of every image, in eval mode."""
    model.eval()
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    features, targets = [], []
    for images, labels in tqdm(loader, desc="features", leave=False, disable=not env.is_main):
        with autocast(env.device, cfg.precision):
            x = model.forward_head(model.forward_features(images.to(env.device)), pre_logits=True)
        features.append(x.float().cpu())
        targets.append(torch.as_tensor(labels))
    return TensorDataset(torch.cat(features), torch.cat(targets))


class ObjectiveStep(nn.Module):
    """model + objective as one module, so one DDP forward covers every pass the objective makes."""

    def __init__(self, model: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, images: torch.Tensor, targets: torch.Tensor):
        return self.objective(self.model, images, targets)


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
        if cfg.precision == "fp16" and self.env.device.type != "cuda":
            raise ValueError("precision=fp16 needs CUDA; use bf16 on CPU")
        if self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            saved = self.out / "config.yaml"
            if not (self.out / "last" / STATE).is_file():
                raise FileNotFoundError(f"{self.out / 'last' / STATE}: nothing to resume in {self.out}")
            changed = differences(TrainConfig.load([str(saved)]), cfg, ignore=("stop_after", "num_workers"))
            if changed:
                raise ValueError(f"{self.out} was trained with a different config: {'; '.join(changed)}")
        seed_everything(cfg.seed)
        self.train_set = build_dataset(cfg, train=True)
        self.eval_set = build_dataset(cfg, train=False)
        self.skipped = [msg for d in (self.train_set, self.eval_set) for msg in getattr(d, "skipped", [])]
        if self.skipped and self.env.is_main:
            print(f"skipped {len(self.skipped)} unreadable image(s), e.g. {self.skipped[0]}")
        self.num_classes = num_classes_of(self.train_set)
        eval_classes = num_classes_of(self.eval_set)
        if eval_classes > self.num_classes:
            raise ValueError(f"the evaluation split has {eval_classes} classes, the training split {self.num_classes}")
        self.model, self.dense_macs = build_model(cfg, self.num_classes)
        self.model.to(self.env.device)
        # the objective may run the model twice (dynamic + complete), so DDP wraps model and objective together
        self.train_data: Dataset = self.train_set
        trained: nn.Module = self.model
        head = self.model.get_classifier()
        if caches_features(cfg, head):
            # the frozen backbone sees the same images every epoch: compute their features once, train the head on them
            self.train_data = extract_features(self.model, self.train_set, self.env, cfg)
            trained = head
        self.step_module = ObjectiveStep(trained, build_objective(cfg))
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
            self._load_state(self.out / "last")
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.writer = None
        if self.env.is_main:
            cfg.dump(self.out / "config.yaml")
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.out / "tensorboard"))

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def _save(self, folder: Path, epoch: int) -> None:
        save_model(self.model, folder, self.cfg, self.num_classes)
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "epoch": epoch,
                 "best": json.dumps(self.best), "rng": _rng_state()}
        atomic_write(folder / STATE, lambda tmp: torch.save(state, tmp))

    def _load_state(self, folder: Path) -> None:
        load_model_weights(self.model, folder)
        state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"]) + 1
        self.best = json.loads(state["best"])
        _set_rng_state(state["rng"])

    # ---- loops -------------------------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, train: bool, epoch: int) -> DataLoader:
        env, cfg = self.env, self.cfg
        if train:
            sampler = DistributedSampler(dataset, env.world_size, env.rank, shuffle=True, seed=cfg.seed)
            sampler.set_epoch(epoch)
        else:
            sampler = distributed.ShardSampler(len(dataset), env.rank, env.world_size)
        return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                          pin_memory=env.device.type == "cuda", persistent_workers=False,
                          generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        cfg, env = self.cfg, self.env
        step_module = self.ddp or self.step_module
        self.model.train()
        loader = self._loader(self.train_data, True, epoch)
        total_steps = self.steps_per_epoch * cfg.epochs
        warmup = round(cfg.warmup_epochs * self.steps_per_epoch)
        sums = {"loss": 0.0, "keep_rate": 0.0}
        batches, step_time = 0, 0.0
        if env.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(env.device)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not env.is_main, dynamic_ncols=True)
        self.optimizer.zero_grad(set_to_none=True)
        for i, (images, targets) in enumerate(bar):
            step = epoch * self.steps_per_epoch + i // cfg.accum_steps
            lr = lr_at(step, total_steps, warmup, self.base_lr, cfg.min_lr * self.method.lr_scale)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if self.method.dynamic:
                set_tau_progress(self.model, step / max(1, total_steps))
            start = time.perf_counter()
            images, targets = images.to(env.device, non_blocking=True), targets.to(env.device, non_blocking=True)
            try:
                with autocast(env.device, cfg.precision):
                    loss, parts = step_module(images, targets)
            except FloatingPointError as e:
                raise FloatingPointError(f"epoch {epoch + 1}, step {i}: {e}; stopped, the last good checkpoint is "
                                         f"{self.out / 'last'}") from e
            self.scaler.scale(loss / cfg.accum_steps).backward()
            if (i + 1) % cfg.accum_steps == 0 or i + 1 == len(loader):
                if cfg.clip_grad:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
            if env.device.type == "cuda":
                torch.cuda.synchronize(env.device)
            step_time += time.perf_counter() - start
            batches += 1
            sums["loss"] += float(parts["loss"])
            sums["keep_rate"] += float(parts.get("keep_rate", 1.0))
            bar.set_postfix(loss=f"{float(parts['loss']):.3f}", keep=f"{float(parts.get('keep_rate', 1.0)):.2f}",
                            lr=f"{lr:.2e}")
        reduced = distributed.all_reduce_sum(torch.tensor([sums["loss"], sums["keep_rate"], batches], dtype=torch.float64))
        return {"lr": lr, "train_loss": reduced[0].item() / reduced[2].item(),
                "train_keep_rate": reduced[1].item() / reduced[2].item(), "step_time_s": step_time / max(1, batches),
                "peak_memory_mb": peak_memory_mb(env.device)}

    def run(self) -> Dict[str, Any]:
        """Train from the current epoch to the end (or for `stop_after` epochs); returns the results."""
        cfg, env = self.cfg, self.env
        if self.start_epoch >= cfg.epochs and (self.out / "results.json").is_file():
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
                                   cfg.precision, self.dense_macs)
                row.update({f"eval_{k}": v for k, v in metrics.items() if k != "keep_rates"})
                if env.is_main:
                    self._report(epoch, metrics)
                if self.best is None or metrics[self.metric_name] > self.best[self.metric_name]:
                    self.best = {**metrics, "epoch": epoch + 1}
                    if env.is_main:
                        save_model(self.model, self.out / "best", cfg, self.num_classes)
            if env.is_main:
                self._log(row, metrics.get("keep_rates"))
                self._save(self.out / "last", epoch)
        results = {"method": cfg.method, "dataset": cfg.dataset, "task": cfg.task, "target_rate": cfg.target_rate,
                   "epochs_done": end, "epochs": cfg.epochs, "trainable_params": self.trainable,
                   "dense_gmacs": self.dense_macs / 1e9, "skipped_images": self.skipped,
                   "metric": self.metric_name, "final": metrics,
                   "best": self.best}
        if env.is_main and end == cfg.epochs:
            atomic_write(self.out / "results.json", lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2)))
        if self.writer is not None:
            self.writer.close()
        return results

    @property
    def metric_name(self) -> str:
        return "mean_per_class_acc" if self.cfg.dataset in MEAN_PER_CLASS else "acc"

    def _report(self, epoch: int, m: Dict[str, Any]) -> None:
        text = f"epoch {epoch + 1}: {self.metric_name} {m[self.metric_name]:.2f}"
        text += f", {m['gmacs']:.3f} GMACs/image ({m.get('gmacs_pct_dense', 100.0):.1f} % of the dense backbone)"
        text += f", {m['images_per_s']:.1f} img/s"
        if "keep_rates" in m:
            text += f", keep rate {m['keep_rate']:.3f} per layer [" + " ".join(f"{r:.2f}" for r in m["keep_rates"]) + "]"
        tqdm.write(text)

    def _log(self, row: Dict[str, Any], layer_rates: Optional[List[float]]) -> None:
        if layer_rates:
            row.update({f"keep_l{i}": r for i, r in enumerate(layer_rates)})
        path = self.out / "log.csv"
        new = not path.is_file()
        if not new:
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]  # drop rows a resume redoes
            fields = list(dict.fromkeys([*(rows[0].keys() if rows else []), *row]))
        else:
            rows, fields = [], list(row)

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows([*rows, row])

        atomic_write(path, write)
        for key, value in row.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(key, value, row["epoch"])


def train(cfg: TrainConfig, resume: bool = False) -> Dict[str, Any]:
    """Train (or resume) one run and return its results; `dytune train` in Python."""
    trainer = Trainer(cfg, resume=resume)
    try:
        return trainer.run()
    finally:
        distributed.teardown()


class _LoadedRun(NamedTuple):
    cfg: TrainConfig
    env: distributed.DistEnv
    model: nn.Module
    dense_macs: int
    num_classes: int
    loader: DataLoader


def _load_run(run_dir: Path, overrides: Tuple[str, ...], checkpoint: str) -> _LoadedRun:
    """A finished run's model with its `best` or `last` weights and its evaluation loader; sets up the process
    group, which the caller tears down (`distributed.teardown`)."""
    folder = Path(run_dir) / checkpoint
    if not (folder / "train_config.yaml").is_file():
        raise FileNotFoundError(f"{folder}: no checkpoint here (expected {checkpoint}/train_config.yaml)")
    cfg = TrainConfig.load([str(folder / "train_config.yaml")], overrides)
    env = distributed.setup(cfg.device)
    seed_everything(cfg.seed)
    eval_set = build_dataset(cfg, train=False)
    num_classes = json.loads((folder / "run_meta.json").read_text())["num_classes"]
    if num_classes_of(eval_set) > num_classes:
        raise ValueError(f"{folder} was trained on {num_classes} classes; the evaluation data "
                         f"({cfg.dataset} {cfg.task} {cfg.eval_split}) has {num_classes_of(eval_set)}")
    model, dense = build_model(cfg, num_classes)
    load_model_weights(model, folder)
    model.to(env.device)
    loader = DataLoader(eval_set, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                        sampler=distributed.ShardSampler(len(eval_set), env.rank, env.world_size))
    return _LoadedRun(cfg, env, model, dense, num_classes, loader)


def evaluate_run(run_dir: Path, overrides: Tuple[str, ...] = (), checkpoint: str = "best",
                 execution_mode: Optional[str] = None) -> Dict[str, Any]:
    """Rebuild a finished run's model, load its `best` or `last` weights and evaluate it (`dytune eval`).

    Args:
        run_dir: The run's output folder.
        overrides: key=value TrainConfig settings (e.g. eval_split=val200).
        checkpoint: "best" or "last".
        execution_mode: Evaluate a DyT model in this mode (e.g. "complete": no token skipped) instead of the default
            sparse inference.
    """
    try:
        run = _load_run(run_dir, overrides, checkpoint)
        if execution_mode is not None and not hasattr(run.model, "dytune_config"):
            raise ValueError(f"{run_dir}: execution_mode={execution_mode!r} needs a dytune-converted model "
                             f"(dyt*, adaptformer), not method {run.cfg.method!r}")
        with nullcontext() if execution_mode is None else execution(run.model, execution_mode):
            return evaluate(run.model, run.loader, run.env, run.num_classes, run.cfg.precision, run.dense_macs)
    finally:
        distributed.teardown()


def calibration_images(cfg: TrainConfig, count: int) -> torch.Tensor:
    """The first `count` training images, transformed as for evaluation (no augmentation)."""
    train_set = build_dataset(dataclasses.replace(cfg, augment="none"), train=True)
    if len(train_set) == 0:
        raise ValueError(f"{cfg.dataset} {cfg.task}: the training split is empty; no images to calibrate on")
    return torch.stack([train_set[i][0] for i in range(min(count, len(train_set)))])


def budget_curve_run(run_dir: Path, keep_rates_to_try: Sequence[float], overrides: Tuple[str, ...] = (),
                     checkpoint: str = "last", calibration_count: int = 64, per_layer: bool = False,
                     ) -> List[Dict[str, Any]]:
    """Accuracy against compute of a trained DyT run, without retraining (`dytune eval --budgets`).

    The first row is the model as trained; then the thresholds are calibrated (`dytune.calibrate`) on training
    images to each keep rate and the evaluation set is scored again. The run's files are not changed.

    Args:
        run_dir: A finished run of a dynamic method (dyt*).
        keep_rates_to_try: Target mean keep rates in [0, 1].
        overrides: key=value TrainConfig settings (e.g. eval_split=val200).
        checkpoint: "best" or "last".
        calibration_count: Training images the thresholds are calibrated on.
        per_layer: Give every dispatcher the same keep rate (True) or shift one shared threshold, which keeps the
            trained model's preference for which layers compute more (False).
    """
    try:
        run = _load_run(run_dir, overrides, checkpoint)
        if not hasattr(run.model, "dytune_config") or not dispatchers(run.model):
            raise ValueError(f"{run_dir}: method {run.cfg.method!r} has no token dispatchers; a budget curve needs a "
                             f"dyt* run")

        def score(target: Optional[float]) -> Dict[str, Any]:
            metrics = evaluate(run.model, run.loader, run.env, run.num_classes, run.cfg.precision, run.dense_macs)
            return {"target_keep_rate": target, **metrics}

        calib = calibration_images(run.cfg, calibration_count)
        return [score(None)] + sweep_keep_rates(run.model, calib, keep_rates_to_try, score, per_layer)
    finally:
        distributed.teardown()
