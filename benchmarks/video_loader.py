"""Clips/s of the video input pipeline alone (decode + sample + transform), per decoder backend and worker count.

    python benchmarks/video_loader.py --root data/minivideo/shapes_motion --out docs/results/video_loader_cpu.json

Reads the K400-layout split `--split` through the same `VideoTask` data path as `dytune train` (no clip cache), once
as training clips (one random view) and once as test clips (`--test-views` views), with a DataLoader of each worker
count. Compare with the model's clips/s from `dytune bench --task video` at the same clip shape: the loader keeps
up when its clips/s is higher.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict


def measure(root: Path, split: str, dataset: str, backend: str, train: bool, workers: int, clips: int,
            frames: int, stride: int, views: int, size: int) -> Dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader, Subset

    from dytune.run_config import TrainConfig
    from dytune.tasks import build_task

    cfg = TrainConfig(dataset=dataset, data_root=str(root), train_split=split, eval_split=split, img_size=size,
                      num_frames=frames, frame_stride=stride, test_views=views, video_backend=backend,
                      cache_images=False, num_workers=workers)
    task = build_task(cfg)
    data = task.build_dataset(train=train)
    data = Subset(data, range(min(clips, len(data))))
    loader = DataLoader(data, batch_size=8, num_workers=workers, collate_fn=task.collate())
    torch.manual_seed(0)
    start = time.perf_counter()
    seen = 0
    for inputs, _ in loader:
        seen += inputs.shape[0]
    seconds = time.perf_counter() - start
    return {"backend": backend, "mode": "train" if train else f"test ({views} views)", "workers": workers,
            "clips": seen, "seconds": seconds, "clips_per_s": seen / seconds, "clip_shape": list(inputs.shape[1:])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("data/minivideo/shapes_motion"))
    p.add_argument("--dataset", default="k400", help="k400 or ssv2 (the layout of --root)")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--workers", default="0,2", help="comma list of DataLoader worker counts")
    p.add_argument("--backends", default="pyav,torchcodec", help="comma list; one that does not import is skipped")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--test-views", type=int, default=3)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    import torch

    rows, skipped = [], {}
    for backend in args.backends.split(","):
        for workers in (int(w) for w in args.workers.split(",")):
            for train in (True, False):
                try:
                    row = measure(args.root, args.split, args.dataset, backend, train, workers, args.clips,
                                  args.frames, args.stride, args.test_views, args.img_size)
                except ImportError as e:  # torchcodec without system FFmpeg libraries
                    skipped[backend] = str(e).splitlines()[0]
                    break
                rows.append(row)
                print(f"{backend:<11} {row['mode']:<16} workers {workers}: {row['clips_per_s']:7.1f} clips/s "
                      f"({row['clips']} clips {row['clip_shape']} in {row['seconds']:.1f} s)", flush=True)
    for backend, why in skipped.items():
        print(f"{backend}: not measured ({why})")
    result = {"argv": sys.argv, "python": platform.python_version(), "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "rows": rows, "skipped_backends": skipped}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
