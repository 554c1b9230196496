"""The task's picture of a finished run on its first evaluation samples (what `dytune demo` draws), for docs/.

    python benchmarks/examples_picture.py runs/miniseg-suite/dyt-r0.5/miniseg/seed0 --out docs/miniseg/predictions.png

Segmentation: each image with its ground truth, the prediction and the skip map of every dispatched layer;
classification: skip maps with the labels; video: the skip map over the frames of the first clip.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a finished run folder")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--samples", type=int, default=4, help="evaluation samples shown (from the first)")
    p.add_argument("--checkpoint", default="last", choices=("last", "best"))
    args = p.parse_args()
    import torch

    from dytune.engine.runs import load_run

    run = load_run(args.run, checkpoint=args.checkpoint)
    data = run.loader.dataset
    samples = [data[i] for i in range(min(args.samples, len(data)))]
    inputs = torch.stack([s[0] for s in samples])
    targets = torch.stack([torch.as_tensor(s[1]) for s in samples])
    with torch.no_grad():
        path = run.task.save_examples(run.model.eval(), inputs, targets, args.out, run.classes)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
