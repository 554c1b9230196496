"""`dytune predict RUN FILE...`: a finished run's predictions on files, with keep rate, MACs and skip maps."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..engine.predict import predict_files
from ..engine.runs import CHECKPOINTS, DEFAULT_CHECKPOINT


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
