"""Device helpers shared by the engine, the benchmarks and the demo: precision, autocast, synchronisation, memory,
and how far a timing can be trusted."""
from __future__ import annotations

import contextlib
import resource
import statistics
from typing import ContextManager, Dict, Optional, Sequence

import torch

__all__ = ["PRECISIONS", "UNRELIABLE_SPREAD", "autocast", "check_precision", "peak_memory_mb", "relative_spread",
           "synchronize", "timing_warning"]

PRECISIONS: Dict[str, Optional[torch.dtype]] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# On a quiet machine repeated rounds agree within a few per cent; wider than this, other work shaped the numbers.
UNRELIABLE_SPREAD = 0.10


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


def relative_spread(values: Sequence[float]) -> float:
    """Half the range of `values` over their median: 0.1 means they lie within about ±10 % of the middle one."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / 2.0 / middle if middle else 0.0


def timing_warning(what: str, spread: float) -> Optional[str]:
    """A warning when `what` (e.g. "the speed-up") spread more than UNRELIABLE_SPREAD between rounds, saying what to
    do about it; None when the timing can be trusted."""
    if spread <= UNRELIABLE_SPREAD:
        return None
    # one decimal: a spread just over the limit would otherwise print as the limit itself ("±10 % ... more than ±10 %")
    return (f"warning: {what} varied by ±{100 * spread:.1f} % between rounds (more than ±{100 * UNRELIABLE_SPREAD:.0f} "
            f"%), so other work on this machine shaped it; rerun on a quiet machine, or with fewer threads "
            f"(--threads N, or OMP_NUM_THREADS=N), before trusting it")
