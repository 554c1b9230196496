"""Device helpers shared by the engine, the benchmarks and the demo: precision, autocast, synchronisation, memory."""
from __future__ import annotations

import contextlib
import resource
from typing import ContextManager, Dict, Optional

import torch

__all__ = ["PRECISIONS", "autocast", "check_precision", "peak_memory_mb", "synchronize"]

PRECISIONS: Dict[str, Optional[torch.dtype]] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision the device cannot run, saying what to use instead."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision=fp16 needs CUDA; use bf16 on CPU")


def autocast(device: torch.device, precision: str) -> ContextManager:
    """Mixed precision for forwards on `device` (a no-op for fp32)."""
    check_precision(device, precision)
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously), so a clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on `device`, or this process's peak resident memory on CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
