"""Evaluation of any task: its metric, MACs per sample, keep rate per dispatched sub-block and throughput."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from tqdm import tqdm

from ..utils import distributed
from ..core.measure import InferenceMeter
from ..utils.runtime import autocast, relative_spread, synchronize
from ..tasks.base import Metric, Task
from ..tasks.classification.metric import ClassificationMetric
from .loader import DataLoader

__all__ = ["evaluate", "extract_features", "to_device"]


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors (alone or inside tuples, lists and dicts) to `device`."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def _throughput_spread(batch_rates: List[Tuple[int, float]]) -> Dict[str, Any]:
    """The thread count and, where this process timed at least two full batches after its first (a warm-up, slower
    on most devices), how far their throughputs spread (`images_per_s_spread`: half the range over the median)."""
    out: Dict[str, Any] = {"threads": torch.get_num_threads()}
    full = max((size for size, _ in batch_rates), default=0)
    rates = [rate for size, rate in batch_rates[1:] if size == full]
    if len(rates) >= 2:
        out["images_per_s_spread"] = relative_spread(rates)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, env: distributed.DistEnv, num_classes: int, precision: str,
             dense_macs: Optional[int] = None, progress: bool = True, task: Optional[Task] = None) -> Dict[str, Any]:
    """The task's metrics, MACs per sample, keep rate per dispatched sub-block and the inference throughput of the
    timed forwards, over the whole evaluation set (summed over all processes; every process enters every
    reduction, also one that has no batch).

    Args:
        model: The model to evaluate (put in eval mode).
        loader: (inputs, targets) batches of this process's shard.
        env: The process's place in the process group.
        num_classes: Classes of the model's output.
        precision: fp32, bf16 or fp16.
        dense_macs: MACs per sample of the dense backbone, for `gmacs_pct_dense`.
        progress: Show a progress bar (main process).
        task: The run's task (its inference step and metric); None: plain forward and classification accuracy.
    """
    model.eval()
    device = env.device
    infer: Callable[[nn.Module, Any], Any] = task.infer if task is not None else (lambda m, x: m(x))
    metric: Metric = task.metric(num_classes, device) if task is not None else ClassificationMetric(
        num_classes, device=device)
    meter = InferenceMeter(model, infer, device)
    seconds_total = torch.zeros(1, dtype=torch.float64, device=device)  # forward seconds
    batch_rates: List[Tuple[int, float]] = []  # (batch size, samples/s) of each timed forward
    for inputs, targets in tqdm(loader, desc="eval", leave=False, disable=not (progress and env.is_main)):
        inputs, targets = to_device(inputs, device), to_device(targets, device)
        with meter.measure(inputs) as batch:
            synchronize(device)
            start = time.perf_counter()
            with autocast(device, precision):
                output = infer(model, inputs)
            synchronize(device)
            seconds = time.perf_counter() - start
            seconds_total += seconds
        batch_rates.append((batch.size, batch.size / max(1e-9, seconds)))
        metric.update(output, targets)
    metric.reduce()
    meter.reduce()
    distributed.all_reduce_sum(seconds_total)
    samples = meter.totals[0].item()
    metrics = {"images": int(samples), **metric.compute(), "gmacs": meter.gmacs(),
               "images_per_s": samples / max(1e-9, seconds_total.item()), **_throughput_spread(batch_rates)}
    if dense_macs:
        metrics["gmacs_pct_dense"] = 100.0 * metrics["gmacs"] * 1e9 / dense_macs
    layer_rates = meter.keep_rates()
    if layer_rates is not None:
        metrics["keep_rates"] = layer_rates
        metrics["keep_rate"] = meter.keep_rate()
    return task.finalize_metrics(metrics) if task is not None else metrics


@torch.no_grad()
def extract_features(features: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, dataset: Dataset,
                     env: distributed.DistEnv, batch_size: int, num_workers: int, precision: str) -> TensorDataset:
    """`features(inputs)` of every sample (as the head receives them), in eval mode, for linear probing."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    outputs, targets = [], []
    for inputs, labels in tqdm(loader, desc="features", leave=False, disable=not env.is_main):
        with autocast(env.device, precision):
            x = features(to_device(inputs, env.device))
        outputs.append(x.float().cpu())
        targets.append(torch.as_tensor(labels))
    return TensorDataset(torch.cat(outputs), torch.cat(targets))
