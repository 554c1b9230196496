"""A finished run's predictions on files, with keep rate, MACs and skip maps (`dytune predict`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..utils import distributed
from ..core.convert import is_converted
from ..core.measure import InferenceMeter
from .runs import DEFAULT_CHECKPOINT, load_run

__all__ = ["predict_files"]


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
        meter = InferenceMeter(model, task.infer)
        output, macs = meter(inputs)
        rates = meter.keep_rates()
        output, shown = task.restore_prediction(output[0], sample, Path(file))
        row: Dict[str, Any] = {"file": str(file), **task.describe_prediction(output, loaded.classes, top_k),
                               "gmacs": int(macs[0]) / 1e9}
        if rates is not None:
            row["keep_rate"] = meter.keep_rate()
            row["keep_rates"] = rates
        if out is not None:
            row.update(task.save_outputs(output, shown, Path(out), Path(file).stem, loaded.classes))
        if skip_maps is not None:
            row["skip_map"] = str(task.save_skip_map(model, sample, Path(skip_maps) / f"{Path(file).stem}.png",
                                                     row.get("label", "")))
        rows.append(row)
    return rows
