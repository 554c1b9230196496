"""Peak memory of one forward pass: the CUDA allocator's statistics, or on CPU a count of the live tensors."""
from __future__ import annotations

import weakref
from typing import Callable, Dict, List, Set

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of the storages that operators create, from creation until their last tensor dies.

    Storages present before (weights, inputs) are not counted; neither are workspaces that an operator frees before
    returning, so this is a lower bound of the activation memory.
    """

    def __init__(self, existing: Set[int]) -> None:
        super().__init__()
        self.existing = existing
        self.live: Dict[int, List[int]] = {}  # storage pointer -> [bytes, live tensors]
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            del self.live[key]
            self.current -= entry[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in self.existing:
                continue
            entry = self.live.get(key)
            if entry is None:
                entry = self.live[key] = [storage.nbytes(), 0]
                self.current += entry[0]
                self.peak = max(self.peak, self.current)
            entry[1] += 1
            weakref.finalize(t, self._release, key)
        return out


@torch.inference_mode()
def peak_memory_bytes(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, model: torch.nn.Module) -> int:
    """Peak memory of fn(images) above the model's weights and the input.

    CUDA: the allocator's peak (workspaces included). CPU: the peak of the tensors the forward creates.
    """
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)
        torch.cuda.reset_peak_memory_stats(images.device)
        before = torch.cuda.memory_allocated(images.device)
        fn(images)
        torch.cuda.synchronize(images.device)
        return torch.cuda.max_memory_allocated(images.device) - before
    existing = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    existing.add(images.untyped_storage().data_ptr())
    tracker = _LiveTensorBytes(existing)
    with tracker:
        out = fn(images)
    del out
    return tracker.peak
