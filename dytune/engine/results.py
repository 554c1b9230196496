"""A suite's results CSV: one row per finished run, collected from the run folders (results.json) or remembered from
the CSV itself, so that deleted run folders keep their results."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from ..methods import METHODS
from ..run_config import TrainConfig
from ..tasks import TASKS
from ..utils.io import atomic_write

__all__ = ["row_keys", "read_csv", "collect", "write_csv"]


def row_keys(rows: List[Dict[str, Any]]) -> Dict[Tuple[str, str, int], Dict[str, Any]]:
    """The rows by (run, task, seed)."""
    return {(r["run"], r["task"], r["seed"]): r for r in rows}


def read_csv(path: Path) -> List[Dict[str, Any]]:
    """The rows of a suite's results.csv (none when it does not exist), typed as `collect` makes them."""
    if not path.is_file():
        return []

    def number(text: str) -> Any:
        if text == "":
            return ""
        value = float(text)
        return int(value) if value.is_integer() and "." not in text else value

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"run", "task", "seed", "acc", "keep_rates"} - set(rows[0] if rows else ())
    if rows and missing:
        raise ValueError(f"{path}: not a suite results file (no column {sorted(missing)})")
    return [{k: (v if k in ("run", "method", "task", "metric", "unit") else
                 [float(x) for x in v.split()] if k == "keep_rates" else number(v)) for k, v in r.items()}
            for r in rows]


def collect(plan: List[Tuple[str, TrainConfig]],
            remembered: Sequence[Dict[str, Any]] = ()) -> List[Dict[str, Any]]:
    """One row per finished run of the plan: from its results.json, else from `remembered` rows (an earlier
    results.csv of the suite, which keeps the results of runs whose folders were deleted)."""
    rows = []
    earlier = row_keys(list(remembered))
    for name, cfg in plan:
        file = Path(cfg.output_dir) / "results.json"
        if not file.is_file():
            if (name, cfg.task, cfg.seed) in earlier:
                rows.append(earlier[(name, cfg.task, cfg.seed)])
            continue
        r = json.loads(file.read_text())
        final = r["final"]
        rows.append({"run": name, "method": cfg.method, "task": cfg.task, "seed": cfg.seed,
                     "target_rate": cfg.target_rate if METHODS[cfg.method].dynamic else "",
                     "acc": final[r["metric"]], "keep_rate": final.get("keep_rate", 1.0), "gmacs": final["gmacs"],
                     "gmacs_pct_dense": final.get("gmacs_pct_dense", ""), "images_per_s": final["images_per_s"],
                     "trainable_params": r["trainable_params"], "keep_rates": final.get("keep_rates", []),
                     "metric": r["metric"], "unit": TASKS[r["task_type"]].sample_unit})
    return rows


def write_csv(rows: List[Dict[str, Any]], path: Path) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            # the union of the rows' columns: rows remembered from an older file may lack newer ones
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows({k: " ".join(f"{v:.4f}" for v in x) if isinstance(x, list) else x for k, x in r.items()}
                             for r in rows)

    atomic_write(path, write)
