"""Evaluation of any task: its metric, MACs per sample, keep rate per dispatched sub-block and throughput."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from tqdm import tqdm

from ..utils import distributed
from ..core.flops import DynamicMacMeter, count_macs
from ..core.modules.blocks import DynamicBlock
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


def _batch_size(inputs: Any) -> int:
    return (inputs if torch.is_tensor(inputs) else inputs[0]).shape[0]


def _sample_shape(inputs: Any) -> Tuple[Any, ...]:
    """The shape of one sample (e.g. a segmentation image's size, which sets its number of tokens and windows)."""
    return tuple(inputs.shape[1:]) if torch.is_tensor(inputs) else tuple(tuple(x.shape[1:]) for x in inputs)


def _first_sample(inputs: Any) -> Any:
    return inputs[:1] if torch.is_tensor(inputs) else type(inputs)(x[:1] for x in inputs)


class _KeepRates:
    """Keep rate of each dispatched sub-block over every recorded forward, weighted by its rows.

    The slots are fixed by the model's structure, so every process reduces a tensor of the same size even when it
    saw no batch (or ran in complete execution, where nothing is dispatched).
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        blocks = [m for m in model.modules() if isinstance(m, DynamicBlock)]
        self.index = {id(b): i for i, b in enumerate(blocks)}
        self.slots: Dict[Tuple[int, str], int] = {}
        for i, block in enumerate(blocks):
            for name in block.dispatchers():
                self.slots[(i, name)] = len(self.slots)
        self.sums = torch.zeros(2, len(self.slots), dtype=torch.float64, device=device)  # rate * rows, rows

    def add(self, meter: DynamicMacMeter) -> None:
        batch = [0.0] * len(self.slots), [0.0] * len(self.slots)
        for block, record in meter.records:
            rows = record.shape[0]
            for name, mask in record.keep_masks.items():
                slot = self.slots[(self.index[id(block)], name)]
                batch[0][slot] += float(mask.detach().float().mean()) * rows
                batch[1][slot] += rows
        self.sums += torch.tensor(batch, dtype=torch.float64, device=self.sums.device)

    def reduce(self) -> None:
        distributed.all_reduce_sum(self.sums)

    def compute(self) -> Optional[List[float]]:
        if not self.slots or not bool((self.sums[1] > 0).any()):
            return None
        return (self.sums[0] / self.sums[1].clamp(min=1.0)).tolist()


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
    keep = _KeepRates(model, device)
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # samples, macs, forward seconds
    batch_rates: List[Tuple[int, float]] = []  # (batch size, samples/s) of each timed forward
    static_by_shape: Dict[Tuple[Any, ...], int] = {}
    for inputs, targets in tqdm(loader, desc="eval", leave=False, disable=not (progress and env.is_main)):
        inputs, targets = to_device(inputs, device), to_device(targets, device)
        batch = _batch_size(inputs)
        shape = _sample_shape(inputs)
        if shape not in static_by_shape:  # what the dynamic blocks do not do costs the same for samples of one shape
            with DynamicMacMeter(model, 1) as meter:
                whole = int(count_macs(model, _first_sample(inputs), forward=infer)[0])
            static_by_shape[shape] = whole - int(meter.macs[0])
        static = static_by_shape[shape]
        with DynamicMacMeter(model, batch) as meter:
            synchronize(device)
            start = time.perf_counter()
            with autocast(device, precision):
                output = infer(model, inputs)
            synchronize(device)
            seconds = time.perf_counter() - start
            totals[2] += seconds
        batch_rates.append((batch, batch / max(1e-9, seconds)))
        keep.add(meter)
        metric.update(output, targets)
        totals[0] += batch
        totals[1] += (static + meter.macs).sum().item()
    metric.reduce()
    distributed.all_reduce_sum(totals)
    keep.reduce()
    samples = totals[0].item()
    metrics = {"images": int(samples), **metric.compute(),
               "gmacs": totals[1].item() / max(1.0, samples) / 1e9,
               "images_per_s": samples / max(1e-9, totals[2].item()), **_throughput_spread(batch_rates)}
    if dense_macs:
        metrics["gmacs_pct_dense"] = 100.0 * metrics["gmacs"] * 1e9 / dense_macs
    layer_rates = keep.compute()
    if layer_rates is not None:
        metrics["keep_rates"] = layer_rates
        metrics["keep_rate"] = sum(layer_rates) / len(layer_rates)
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
