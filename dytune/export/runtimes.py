"""Runtimes that run an exported model: ONNX Runtime, OpenVINO and torch.export's own program, loaded lazily.

The core of dytune depends on none of them; `pip install -e ".[export]"` installs onnx, onnxruntime and openvino.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

__all__ = ["require", "Runner", "RUNTIMES", "FORMAT_RUNTIMES", "load_runner", "available"]

Runner = Callable[[np.ndarray], np.ndarray]  # float32 input batch -> float32 output batch


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or fail naming the extra that installs it.

    Args:
        module: Import name (e.g. "onnxruntime").
        purpose: What needs it, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{purpose} needs the {module!r} package, which is not installed ({e}); install the "
                          f"export extra: pip install -e \".[export]\" (or pip install {module})") from e


def _onnxruntime(path: Path, threads: Optional[int]) -> Runner:
    ort = require("onnxruntime", "running an ONNX export on ONNX Runtime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda inputs: session.run(None, {name: inputs})[0]


def _openvino(path: Path, threads: Optional[int]) -> Runner:
    ov = require("openvino", "running an ONNX export on OpenVINO")
    config = {"INFERENCE_PRECISION_HINT": "f32"}  # CPUs with bf16 units would otherwise run in bf16
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return lambda inputs: np.asarray(request.infer({0: inputs})[0])


def _exported_program(path: Path, threads: Optional[int]) -> Runner:
    module = torch.export.load(str(path)).module()

    def run(inputs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(inputs)).numpy()
    return run


# runtime name -> (loader, the Python package it needs)
RUNTIMES: Dict[str, Tuple[Callable[[Path, Optional[int]], Runner], str]] = {
    "onnxruntime": (_onnxruntime, "onnxruntime"),
    "openvino": (_openvino, "openvino"),
    "torch": (_exported_program, "torch"),
}
FORMAT_RUNTIMES = {"onnx": ("onnxruntime", "openvino"), "exported-program": ("torch",)}


def available(runtime: str) -> bool:
    """Whether the package of `runtime` imports here."""
    try:
        importlib.import_module(RUNTIMES[runtime][1])
    except ImportError:
        return False
    return True


def load_runner(runtime: str, path: Path, threads: Optional[int] = None) -> Runner:
    """A function running the exported model at `path` on `runtime` (a key of RUNTIMES).

    Args:
        runtime: "onnxruntime", "openvino" (ONNX files) or "torch" (torch.export programs, .pt2).
        path: The exported file.
        threads: Intra-op threads (None: the runtime's default).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no exported model here")
    return RUNTIMES[runtime][0](Path(path), threads)
