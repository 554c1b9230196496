"""Process-group set-up for torchrun (DDP: nccl on CUDA, gloo on CPU) and the reductions metrics use: sums, maxima
and gathered rows."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass
class DistEnv:
    """Where this process runs: rank 0 of 1 without torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def process_rank() -> int:
    """This process's rank: the process group's when one is joined, torchrun's RANK before that, 0 without
    torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Whether this process is rank 0 (or not under torchrun): the one that prints and writes."""
    return process_rank() == 0


def setup(device: str = "auto") -> DistEnv:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = process_rank()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local % max(1, torch.cuda.device_count()))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistEnv(rank, world, local, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes (a no-op in a single process)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over all processes, in place (a no-op in a single process); CPU tensors work under
    NCCL too."""
    if dist.is_initialized():
        moved = tensor.cuda() if dist.get_backend() == "nccl" else tensor
        dist.all_reduce(moved, op=dist.ReduceOp.MAX)
        tensor.copy_(moved)
    return tensor


def all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """The rows of every process, concatenated in rank order (`rows` itself in a single process).

    Each process may hold a different number of rows (an empty shard too); the trailing dimensions must agree.
    For metrics that need every sample at once (ranking metrics such as mAP or AUROC, medians).
    """
    if not dist.is_initialized():
        return rows
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else rows.device
    count = torch.tensor([rows.shape[0]], device=device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = rows.new_zeros((longest, *rows.shape[1:]), device=device)
    padded[:rows.shape[0]] = rows.to(device)  # all_gather needs one shape on every rank
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:int(c.item())] for g, c in zip(gathered, counts)]).to(rows.device)


class ShardSampler(Sampler):
    """Indices rank, rank + world, ... without padding, so metrics summed over ranks count every image once."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
