"""Peak memory of a long DyT run that evaluates every epoch, with exact kept-token counts and with buckets.

Each epoch's sparse evaluation meets new kept-token counts; with exact counts every new count compiles and caches
new CPU kernels, so the process grows epoch by epoch. This trains the same mini-VTAB run (the suite's base
settings, one task) once per bucket setting, each in its own process, and reads the peak resident memory that
`log.csv` records per epoch.

    OMP_NUM_THREADS=1 python benchmarks/train_memory.py --task digits --epochs 20 --buckets 16,1 \\
        --out docs/results/train_memory.json
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

SUITE = Path(__file__).resolve().parents[1] / "configs" / "minivtab_suite.yaml"


def train_one(bucket: int, task: str, epochs: int, method: str, out: Path) -> None:
    """Train one run with `DynamicBlock.bucket = bucket` (this process only)."""
    from dytune.engine import TrainConfig, train
    from dytune.engine.suite_file import load_suite
    from dytune.core.modules.blocks import DynamicBlock

    DynamicBlock.bucket = bucket
    base = load_suite(SUITE)["base"]
    cfg = TrainConfig.from_dict({**base, "task": task, "method": method, "epochs": epochs, "lr": 0.01,
                                 "warmup_epochs": epochs / 10, "eval_every": 1, "output_dir": str(out),
                                 "overwrite": True}, source="train_memory")
    train(cfg)


def peak_per_epoch(run: Path) -> List[float]:
    with open(run / "log.csv", newline="") as f:
        return [float(row["peak_memory_mb"]) for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="digits")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--method", default="dyt")
    parser.add_argument("--buckets", default="16,1", help="comma list; 1 = exact kept counts")
    parser.add_argument("--runs", type=Path, default=Path("runs/train_memory"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/train_memory.json"))
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one is not None:
        train_one(args.one, args.task, args.epochs, args.method, args.runs / f"{args.method}-bucket{args.one}")
        return
    result: Dict[str, Any] = {"command": sys.argv, "machine": platform.processor() or platform.machine(),
                              "task": args.task, "epochs": args.epochs, "method": args.method, "peak_mb": {}}
    for bucket in (int(b) for b in args.buckets.split(",")):
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", str(bucket)], check=True)
        result["peak_mb"][str(bucket)] = peak_per_epoch(args.runs / f"{args.method}-bucket{bucket}")
        print(f"bucket {bucket}: peak MB per epoch {result['peak_mb'][str(bucket)]}")
    from dytune.utils.io import atomic_write

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2) + "\n"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
