"""`dytune export RUN`: a finished run's whole model (task head, pooling, views, sliding windows) as ONNX or a
torch.export program, with DyT routing by fixed capacity (static shapes) or by threshold, verified against eager."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

from ..utils import distributed
from ..core.calibrate import dispatchers
from ..core.capacity import plan_capacity, set_capacity
from ..core.convert import is_converted
from ..engine.runs import CHECKPOINTS, DEFAULT_CHECKPOINT, calibration_inputs, load_run
from ..export.graph import FORMATS, ROUTINGS, export_model

__all__ = ["export_run", "add_parser", "run"]


def _capacity_arg(text: str) -> Optional[float]:
    if text == "trained":
        return None
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--capacity {text!r}: expected 'trained' or a mean keep rate in [0, 1]"
                                         ) from None
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"--capacity {text!r}: expected a mean keep rate in [0, 1]")
    return rate


def export_run(run_dir: Path, out: Path, fmt: str = "onnx", routing: str = "capacity",
               capacity: Optional[float] = None, checkpoint: str = DEFAULT_CHECKPOINT, calibration_count: int = 64,
               overrides: Sequence[str] = (), batch: int = 2) -> Dict[str, Any]:
    """Export a finished run's model as its task runs it at evaluation, and verify the export.

    Args:
        run_dir: The run's output folder.
        out: The exported file (.onnx, or .pt2 for exported-program); the report goes to `<out>.json`.
        fmt: "onnx" or "exported-program".
        routing: "capacity" (each dispatcher keeps a fixed top-k per image: static shapes) or "threshold" (the
            exact routing of sparse inference, with data-dependent sizes).
        capacity: Capacity routing: the mean keep rate to calibrate to, or None for the trained thresholds' keep
            rate of each dispatcher, both measured on `calibration_count` training samples.
        checkpoint: "best" or "last".
        calibration_count: Training samples (without augmentation) the capacities are measured on.
        overrides: key=value TrainConfig settings.
        batch: Batch of the example input (the exported batch size is dynamic).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if Path(out).suffix != FORMATS[fmt]:
        raise ValueError(f"--out {out}: a {fmt} export is written to a {FORMATS[fmt]} file")
    try:
        loaded = load_run(Path(run_dir), tuple(overrides) + ("device=cpu",), checkpoint, with_data=False)
    finally:
        distributed.teardown()
    cfg, task, model = loaded.cfg, loaded.task, loaded.model.eval()
    dynamic = is_converted(model) and bool(dispatchers(model))
    if capacity is not None and not (dynamic and routing == "capacity"):
        raise ValueError(f"{run_dir}: --capacity applies to capacity routing of a dyt* run (method {cfg.method!r}, "
                         f"routing {routing!r})")
    calib = calibration_inputs(cfg, task, calibration_count)
    if dynamic and routing == "capacity":
        set_capacity(model, plan_capacity(model, calib, capacity))
    shape = task.example_input().shape[1:]
    gen = torch.Generator().manual_seed(cfg.seed)
    samples = [calib[i:i + batch] if calib.shape[1:] == shape and len(calib) >= i + batch
               else torch.randn(batch, *shape, generator=gen) for i in (0, batch)]
    metadata = {"run_dir": str(run_dir), "checkpoint": checkpoint, "task": task.name, "method": cfg.method,
                "num_classes": loaded.num_classes, "classes": loaded.classes,
                "capacity_from": None if not dynamic or routing != "capacity" else (
                    f"trained thresholds on {len(calib)} training samples" if capacity is None
                    else f"mean keep rate {capacity} calibrated on {len(calib)} training samples"),
                "preprocess": {"img_size": cfg.img_size, "mean": list(cfg.mean), "std": list(cfg.std),
                               "augment": cfg.augment}}
    return export_model(model, samples[0], Path(out), fmt, routing, forward=task.infer, verify_inputs=samples[1:],
                        metadata=metadata)


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="export a finished run to ONNX or torch.export, verified",
                       description=__doc__ + " Needs the export extra: pip install -e \".[export]\".")
    p.add_argument("run_dir", type=Path)
    p.add_argument("overrides", nargs="*", help="key=value settings (e.g. test_views=3)")
    p.add_argument("--format", choices=tuple(FORMATS), default="onnx", dest="fmt")
    p.add_argument("--routing", choices=ROUTINGS, default="capacity",
                   help="capacity: fixed top-k per image and dispatcher, static shapes (any runtime); threshold: "
                        "exact sparse routing with data-dependent sizes (ONNX Runtime, OpenVINO, torch.export)")
    p.add_argument("--capacity", type=_capacity_arg, default=None, metavar="trained|RATE",
                   help="capacity routing: each dispatcher keeps its trained keep rate (default), or the thresholds "
                        "are calibrated to this mean keep rate first; measured on training samples")
    p.add_argument("--calibration-images", type=int, default=64)
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default=DEFAULT_CHECKPOINT)
    p.add_argument("--out", type=Path, required=True, help="the exported file (.onnx or .pt2); report at OUT.json")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = export_run(args.run_dir, args.out, args.fmt, args.routing, args.capacity, args.checkpoint,
                        args.calibration_images, args.overrides)
    checks = ", ".join(f"{name} max |diff| {v['max_abs_diff']:.1e}" for name, v in report["verification"].items())
    print(f"wrote {args.out} ({report['format']}, {report['routing']} routing); verified against eager: "
          f"{checks or 'no runtime available'}; report {args.out}.json")
    return 0
