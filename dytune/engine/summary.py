"""VTAB-1K results as the paper's Table 3, with both averaging conventions."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

from ..tasks.classification.vtab import VTAB_GROUPS
from ..utils.tables import markdown_table

SHORT = {"cifar": "C100", "caltech101": "Cal", "dtd": "DTD", "oxford_flowers102": "Flw", "oxford_iiit_pet": "Pets",
         "svhn": "SVHN", "sun397": "Sun", "patch_camelyon": "Cam", "eurosat": "Euro", "resisc45": "Res",
         "diabetic_retinopathy": "Ret", "clevr_count": "Cnt", "clevr_dist": "Dist", "dmlab": "DML", "kitti": "KITTI",
         "dsprites_loc": "dLoc", "dsprites_ori": "dOri", "smallnorb_azi": "sAzi", "smallnorb_ele": "sEle"}


def collect(run_dir: Path, metric: str) -> Dict[str, dict]:
    """task -> {acc, gmacs, params} from `<run_dir>/<task>/results.json`."""
    rows = {}
    for file in sorted(Path(run_dir).glob("*/results.json")):
        results = json.loads(file.read_text())
        chosen = results[metric] or {}
        if chosen:
            rows[file.parent.name] = {"acc": chosen[results["metric"]], "gmacs": chosen["gmacs"],
                                      "params": results["trainable_params"]}
    return rows


def vtab_table(run_dirs: Sequence[Path], metric: str = "final") -> str:
    """Markdown table: one row per run folder, the 19 tasks, group means and both overall means.

    'Group mean' is the mean of the three group means (the paper's convention); 'Task mean' is the plain mean of
    the 19 tasks (V-PETL Bench's). Both are left empty unless every task of a row has finished.
    """
    tasks: List[str] = [t for group in VTAB_GROUPS.values() for t in group]
    header = ["Run", *(SHORT[t] for t in tasks), "Natural", "Specialized", "Structured", "Group mean", "Task mean",
              "GMACs", "Params (M)"]
    body = []
    for run_dir in run_dirs:
        rows = collect(run_dir, metric)
        cells = [Path(run_dir).name] + [f"{rows[t]['acc']:.1f}" if t in rows else "" for t in tasks]
        groups = [sum(rows[t]["acc"] for t in g) / len(g) if all(t in rows for t in g) else None
                  for g in VTAB_GROUPS.values()]
        cells += [f"{g:.2f}" if g is not None else "" for g in groups]
        complete = all(g is not None for g in groups)
        cells.append(f"{sum(groups) / 3:.2f}" if complete else "")
        cells.append(f"{sum(rows[t]['acc'] for t in tasks) / len(tasks):.2f}" if complete else "")
        done = list(rows.values())
        cells.append(f"{sum(r['gmacs'] for r in done) / len(done):.2f}" if done else "")
        cells.append(f"{sum(r['params'] for r in done) / len(done) / 1e6:.3f}" if done else "")
        body.append(cells)
    lines = [markdown_table(header, body)]
    lines.append(f"\nAccuracy: {metric} epoch, top-1 %; GMACs: mean per test image over the finished tasks; Params: "
                 f"trainable parameters including the head, mean over tasks. Group mean = mean of the Natural, "
                 f"Specialized and Structured means (the paper's convention); Task mean = mean of the 19 tasks.")
    return "\n".join(lines)
