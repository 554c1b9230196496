"""The `dytune bench --runtime` runtimes: ONNX exports timed on ONNX Runtime and OpenVINO."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..bench.runtimes import RUNTIMES, register_runtime
from .graph import export_model
from .runtimes import load_runner

__all__ = ["compile_for"]


def compile_for(runtime: str) -> Callable:
    """A `dytune.bench.runtimes.Compiler` exporting to ONNX (verified on `runtime`) and running on `runtime`."""

    def compile_model(model: nn.Module, step: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                      example: torch.Tensor, routing: str, threads: Optional[int]) -> Callable[[torch.Tensor],
                                                                                               torch.Tensor]:
        with tempfile.TemporaryDirectory(prefix="dytune-bench-") as folder:  # the runtime keeps the weights
            path = Path(folder) / "model.onnx"
            export_model(model.eval(), example, path, "onnx", routing, forward=step, runtimes=[runtime])
            run = load_runner(runtime, path, threads)
        return lambda inputs: torch.from_numpy(run(inputs.numpy()))
    return compile_model


for _name in ("onnxruntime", "openvino"):
    if _name not in RUNTIMES:
        register_runtime(_name, compile_for(_name))
