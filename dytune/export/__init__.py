"""Deployment: export a (DyT) model with its task's inference step to ONNX or torch.export, verified on the runtimes
(ONNX Runtime, OpenVINO, torch), and `dytune export RUN`. Needs the export extra: pip install -e ".[export]"."""
from .graph import FORMATS, ROUTINGS, InferenceGraph, export_model, export_problems, routing
from .runtimes import RUNTIMES, available, load_runner

__all__ = ["FORMATS", "ROUTINGS", "InferenceGraph", "export_model", "export_problems", "routing", "RUNTIMES",
           "available", "load_runner"]
from . import bench as _bench  # noqa: F401,E402  (registers the runtimes of `dytune bench --runtime`)
