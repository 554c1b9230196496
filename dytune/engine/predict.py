"""`dytune predict RUN FILE...`: a finished run's predictions on files, with keep rate, MACs and skip maps."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..utils import distributed
from ..core.convert import is_converted
from ..core.flops import DynamicMacMeter, count_macs
from .evaluation import _KeepRates
from .runs import CHECKPOINTS, DEFAULT_CHECKPOINT, load_run

__all__ = ["predict_files", "add_parser", "run"]


@torch.no_grad()
def predict_files(run_dir: Path, files: Sequence[Path], top_k: int = 5, skip_maps: Optional[Path] = None,
                  checkpoint: str = DEFAULT_CHECKPOINT, overrides: Sequence[str] = (),
                  out: Optional[Path] = None) -> List[Dict[str, Any]]:
    """One prediction per file: what the task predicts (e.g. the top-k classes with probabilities), the keep rate
    of the dynamic model and its MACs on that file; with `skip_maps`, a picture per file of what was skipped.

    Args:
        run_dir: A finished run's folder.
        files: Inputs the run's task reads (images for classification).
        top_k: Classes to list per file (classification tasks).
        skip_maps: Folder for one skip-map PNG per file (dyt* runs).
        checkpoint: "best" or "last" (default).
        overrides: key=value TrainConfig settings (e.g. device=cpu).
        out: Folder for the files the task draws per input (segmentation: a palette mask PNG and an overlay).
    """
    try:
        loaded = load_run(Path(run_dir), tuple(overrides), checkpoint, with_data=False)
    finally:
        distributed.teardown()
    task, model = loaded.task, loaded.model.eval()
    device = next(model.parameters()).device
    if skip_maps is not None and not is_converted(model):
        raise ValueError(f"{run_dir}: --skip-maps needs a dyt* run; method {loaded.cfg.method!r} skips nothing")
    rows = []
    for file in files:
        sample = task.load_sample(Path(file))
        inputs = sample[None].to(device)
        with DynamicMacMeter(model, 1) as meter:
            output = task.infer(model, inputs)
        keep = _KeepRates(model, torch.device("cpu"))
        keep.add(meter)
        rates = keep.compute()
        output, shown = task.restore_prediction(output[0], sample, Path(file))
        row: Dict[str, Any] = {"file": str(file), **task.describe_prediction(output, loaded.classes, top_k),
                               "gmacs": int(count_macs(model, inputs, forward=task.infer)[0]) / 1e9}
        if rates is not None:
            row["keep_rate"] = sum(rates) / len(rates)
            row["keep_rates"] = rates
        if out is not None:
            row.update(task.save_outputs(output, shown, Path(out), Path(file).stem, loaded.classes))
        if skip_maps is not None:
            row["skip_map"] = str(task.save_skip_map(model, sample, Path(skip_maps) / f"{Path(file).stem}.png",
                                                     row.get("label", "")))
        rows.append(row)
    return rows


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="predict with a finished run on files", description="Rebuild a run's model and "
                       "predict on files: the top classes with probabilities (segmentation: with their share of the "
                       "pixels), the keep rate and MACs per file, (--out) the task's pictures, e.g. segmentation "
                       "masks, and (--skip-maps) a picture of the tokens each layer skipped.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--skip-maps", type=Path, default=None, metavar="DIR", help="write one skip map per file here")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write what the task draws per file here (segmentation: <name>_mask.png, a palette PNG of "
                        "the classes, and <name>_overlay.png, both at the image's size)")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default=DEFAULT_CHECKPOINT)
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise ValueError(f"--top-k {args.top_k}: expected an integer >= 1")
    rows = predict_files(args.run_dir, args.files, args.top_k, args.skip_maps, args.checkpoint, out=args.out)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(row["file"])
        for name, p in row.get("top", []):
            print(f"  {p:6.1%}  {name}")
        cost = f"  {row['gmacs'] * 1e3:.1f} MMACs"
        if "keep_rate" in row:
            cost += f", keep rate {row['keep_rate']:.2f} [" + " ".join(f"{r:.2f}" for r in row["keep_rates"]) + "]"
        print(cost)
        for what in ("mask", "overlay", "skip_map"):
            if what in row:
                print(f"  {what.replace('_', ' ')} {row[what]}")
    return 0
