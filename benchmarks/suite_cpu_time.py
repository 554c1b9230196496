"""CPU time of a suite's finished runs, from their logs: per epoch the mean step time x the steps of an epoch, plus
each evaluation's images / images per second, summed per run name, search and final runs apart.

    python benchmarks/suite_cpu_time.py --suite runs/minivtab-grid --out docs/results/minivtab_grid_cpu_time.json

The steps of an epoch come from the training split's size (`--images SPLIT=N`, by default mini-VTAB's), so data
loading between steps and start-up are not counted: a lower bound of the wall time of one-thread processes.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict

import yaml

from dytune.utils.io import atomic_write


def run_seconds(folder: Path, images: Dict[str, int]) -> float:
    """Training and evaluation seconds of the finished run in `folder`."""
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    if cfg["train_split"] not in images:
        raise SystemExit(f"{folder}: train_split {cfg['train_split']!r} has no --images count")
    steps = math.ceil(images[cfg["train_split"]] / cfg["batch_size"])
    seconds = 0.0
    for row in csv.DictReader((folder / "log.csv").open()):
        seconds += float(row["step_time_s"] or 0) * steps
        if row.get("eval_images") and row.get("eval_images_per_s"):
            seconds += float(row["eval_images"]) / float(row["eval_images_per_s"])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, required=True, help="the suite's output folder")
    parser.add_argument("--images", nargs="+", default=["train800=800", "train800val200=1000"],
                        help="training images per train_split, SPLIT=N")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    images = {k: int(v) for k, v in (item.split("=", 1) for item in args.images)}
    hours: Dict[str, Dict[str, float]] = {"search": defaultdict(float), "final": defaultdict(float)}
    runs: Dict[str, int] = defaultdict(int)
    for result in sorted(args.suite.glob("**/results.json")):
        folder = result.parent
        parts = folder.relative_to(args.suite).parts  # [search, run, point, task, seed] or [run, task, seed]
        kind, name = ("search", parts[1]) if parts[0] == "search" else ("final", parts[0])
        hours[kind][name] += run_seconds(folder, images) / 3600
        runs[kind] += 1
    record = {"command": "python benchmarks/suite_cpu_time.py --suite {} --images {}".format(
                  args.suite, " ".join(args.images)), "runs": runs,
              "hours": {kind: {name: round(h, 2) for name, h in sorted(per.items())} for kind, per in hours.items()},
              "total_hours": {kind: round(sum(per.values()), 2) for kind, per in hours.items()}}
    text = json.dumps(record, indent=1)
    print(text)
    if args.out:
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(text + "\n"))


if __name__ == "__main__":
    main()
