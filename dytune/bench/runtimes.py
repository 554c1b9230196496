"""The runtimes `dytune bench --runtime` can time exported models on, besides eager PyTorch.

The benchmark does not depend on the export code: `dytune.export` registers its runtimes (onnxruntime, openvino)
here when it is imported, as the `dytune` command does for every sub-command.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn

__all__ = ["Compiler", "RUNTIMES", "EAGER", "register_runtime", "runtime_compiler"]

EAGER = "eager"

# (model, inference step, example batch, routing, threads) -> a function of a batch running the exported model;
# routing is "capacity" or "threshold" for models with dispatchers, ignored otherwise
Compiler = Callable[[nn.Module, Callable[[nn.Module, torch.Tensor], torch.Tensor], torch.Tensor, str, Optional[int]],
                    Callable[[torch.Tensor], torch.Tensor]]
RUNTIMES: Dict[str, Compiler] = {}


def register_runtime(name: str, compiler: Compiler) -> None:
    """Add a runtime; a name already taken (or "eager") is an error."""
    if name == EAGER or name in RUNTIMES:
        raise ValueError(f"runtime {name!r} is already registered")
    RUNTIMES[name] = compiler


def runtime_compiler(name: str) -> Compiler:
    """The compiler of a registered runtime."""
    if name not in RUNTIMES:
        known = ", ".join([EAGER, *RUNTIMES]) if RUNTIMES else EAGER
        raise ValueError(f"runtime {name!r}: expected one of {known} (import dytune.export to register onnxruntime "
                         f"and openvino; they need pip install -e \".[export]\")")
    return RUNTIMES[name]
