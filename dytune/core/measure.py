"""What inference costs, batch by batch: MACs per sample and the keep rate of each dispatched sub-block, over every
forward a model runs (multi-view and sliding-window inference run several per batch)."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from ..utils import distributed
from .flops import DynamicMacMeter, count_macs
from .modules.blocks import DynamicBlock

__all__ = ["KeepRates", "InferenceMeter", "Forward"]

Forward = Callable[[nn.Module, Any], Any]


def _plain_forward(model: nn.Module, inputs: Any) -> Any:
    return model(inputs)


def _sample_shape(inputs: Any) -> Tuple[Any, ...]:
    """The shape of one sample (e.g. a segmentation image's size, which sets its number of tokens and windows)."""
    return tuple(inputs.shape[1:]) if torch.is_tensor(inputs) else tuple(tuple(x.shape[1:]) for x in inputs)


def _first_sample(inputs: Any) -> Any:
    return inputs[:1] if torch.is_tensor(inputs) else type(inputs)(x[:1] for x in inputs)


def batch_size(inputs: Any) -> int:
    """Samples in a batch of inputs (a tensor, or a tuple of tensors that share their first dimension)."""
    return (inputs if torch.is_tensor(inputs) else inputs[0]).shape[0]


class KeepRates:
    """Keep rate of each dispatched sub-block over every recorded forward, weighted by its rows.

    The slots are fixed by the model's structure, so every process reduces a tensor of the same size even when it
    saw no batch (or ran in complete execution, where nothing is dispatched).

    Args:
        model: The model whose dynamic blocks are recorded.
        device: Where the sums live (the process group's device, to reduce them).
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
        """Add the forwards `meter` recorded."""
        batch = [0.0] * len(self.slots), [0.0] * len(self.slots)
        for block, record in meter.records:
            rows = record.shape[0]
            for name, mask in record.keep_masks.items():
                slot = self.slots[(self.index[id(block)], name)]
                batch[0][slot] += float(mask.detach().float().mean()) * rows
                batch[1][slot] += rows
        self.sums += torch.tensor(batch, dtype=torch.float64, device=self.sums.device)

    def reduce(self) -> None:
        """Sum over the processes of the group (every process calls it)."""
        distributed.all_reduce_sum(self.sums)

    def compute(self) -> Optional[List[float]]:
        """The keep rate of each dispatched sub-block, or None where nothing was dispatched."""
        if not self.slots or not bool((self.sums[1] > 0).any()):
            return None
        return (self.sums[0] / self.sums[1].clamp(min=1.0)).tolist()

    def mean(self) -> Optional[float]:
        """The mean over the dispatched sub-blocks of their keep rates (`compute`), or None."""
        rates = self.compute()
        return None if rates is None else sum(rates) / len(rates)


class InferenceMeter:
    """Measures a model's inference batch by batch: MACs per sample and keep rates per dispatched sub-block of every
    forward run inside `measure`, summed over the batches.

    The cost of what the dynamic blocks do not do (patch embedding, heads, attention outside dytune blocks) is the
    same for samples of one shape; it is counted once per shape (`count_macs` on one sample), so the measured
    forward itself runs untouched (timed loops stay honest).

    Args:
        model: The model measured.
        forward: The inference step, forward(model, inputs) (a task's `infer`); None: model(inputs).
        device: Where the sums live (the process group's device, to reduce them).
    """

    def __init__(self, model: nn.Module, forward: Optional[Forward] = None,
                 device: Optional[torch.device] = None) -> None:
        self.model = model
        self.forward: Forward = forward if forward is not None else _plain_forward
        device = device if device is not None else torch.device("cpu")
        self.keep = KeepRates(model, device)
        self.totals = torch.zeros(2, dtype=torch.float64, device=device)  # samples, MACs
        self._static: Dict[Tuple[Any, ...], int] = {}

    def static_macs(self, inputs: Any) -> int:
        """MACs per sample of everything but the dytune blocks' computed rows, for samples shaped as `inputs`."""
        shape = _sample_shape(inputs)
        if shape not in self._static:
            with DynamicMacMeter(self.model, 1) as meter:
                whole = int(count_macs(self.model, _first_sample(inputs), forward=self.forward)[0])
            self._static[shape] = whole - int(meter.macs[0])
        return self._static[shape]

    @contextlib.contextmanager
    def measure(self, inputs: Any) -> Iterator["MeasuredBatch"]:
        """Measure the forwards run inside the block on the batch `inputs`; on leaving it, the batch's `macs`
        (int64 [B], per sample) are set and added to the totals, and its keep rates recorded."""
        static = self.static_macs(inputs)
        batch = MeasuredBatch(batch_size(inputs))
        with DynamicMacMeter(self.model, batch.size) as meter:
            yield batch
        batch.macs = static + meter.macs
        self.keep.add(meter)
        self.totals[0] += batch.size
        self.totals[1] += batch.macs.sum().item()

    def __call__(self, inputs: Any) -> Tuple[Any, torch.Tensor]:
        """Run and measure the inference step on `inputs`; returns its output and the MACs per sample."""
        with self.measure(inputs) as batch:
            output = self.forward(self.model, inputs)
        return output, batch.macs

    def reduce(self) -> None:
        """Sum the totals and keep rates over the processes of the group (every process calls it)."""
        distributed.all_reduce_sum(self.totals)
        self.keep.reduce()

    @property
    def samples(self) -> int:
        """Samples measured."""
        return int(self.totals[0].item())

    def gmacs(self) -> float:
        """GMACs per sample over every measured batch."""
        return self.totals[1].item() / max(1.0, self.totals[0].item()) / 1e9

    def keep_rates(self) -> Optional[List[float]]:
        """Keep rate of each dispatched sub-block over the measured forwards, weighted by rows; None: none."""
        return self.keep.compute()

    def keep_rate(self) -> Optional[float]:
        """The mean of `keep_rates` (None where nothing was dispatched)."""
        return self.keep.mean()


class MeasuredBatch:
    """One measured batch: its size and, once measured, its MACs per sample (int64 [size])."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.macs: Optional[torch.Tensor] = None
