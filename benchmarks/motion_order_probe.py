"""Can a head on frozen frame tokens read the order of mini-video's motion_order clips?

mini-video's motion_order classes differ only in the order of the frames (each clip played backwards is a clip of
its partner class). The video model runs every frame through the backbone on its own and pools the tokens of all
frames with `AttentivePool`, so only the pooling head can compare frames. This script caches the frozen backbone's
tokens of the training and validation clips once (one centre view each) and trains three heads on them:

* `pool`: the paper's order-blind attentive pool + linear head;
* `pool+temporal`: the same with `temporal_embed` (a learnable embedding per frame index before pooling), dytune's
  order-aware option;
* `frames`: `FramePool` (`video_pool=frames`), the attentive pool applied to each frame separately (shared
  weights), the per-frame vectors concatenated in order + linear head: order-aware by construction.

If `frames` learns the order and `pool+temporal` does not, the pooling is the limit; if neither does, the frozen
features do not carry what the task needs.

    python benchmarks/motion_order_probe.py --root data/minivideo/motion_order --out docs/results/motion_order_probe.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dytune.run_config import TrainConfig
from dytune.tasks import build_task
from dytune.tasks.video.model import AttentivePool, FramePool
from dytune.utils.io import atomic_write


def cached_tokens(root: Path, split: str, frames: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Frozen backbone tokens [N, T, tokens, D] and labels [N] of one split (one centre view per clip)."""
    cfg = TrainConfig.from_dict({"dataset": "ssv2", "data_root": str(root), "eval_split": split, "img_size": 64,
                                 "num_frames": frames, "test_views": 1, "mean": [0.5] * 3, "std": [0.5] * 3,
                                 "model": "dytune_mini_vit", "pretrained": True, "num_workers": 0})
    task = build_task(cfg)
    data = task.build_dataset(train=False)
    model = task.add_head(task.create_backbone(task.num_classes(data), True), task.num_classes(data)).eval()
    tokens, labels = [], []
    loader = torch.utils.data.DataLoader(data, batch_size=32)
    with torch.no_grad():
        for clips, targets in tqdm(loader, desc=f"tokens of {split}", leave=False):
            clips = clips.flatten(1, 2) if clips.ndim == 6 else clips  # one view: [B, 1, T, ...] -> [B, T, ...]
            tokens.append(model.frame_tokens(clips))
            labels.append(targets)
    return torch.cat(tokens), torch.cat(labels)


def head(kind: str, dim: int, heads: int, frames: int, classes: int) -> nn.Module:
    """The pooling of `VideoClassifier` for `kind` and a linear head."""
    pool = (FramePool(dim, heads, frames) if kind == "frames"
            else AttentivePool(dim, heads, frames, temporal_embed=kind == "pool+temporal"))
    return nn.Sequential(pool, nn.Linear(pool.out_features, classes))


def train_head(model: nn.Module, train: Tuple[torch.Tensor, torch.Tensor], val: Tuple[torch.Tensor, torch.Tensor],
               epochs: int, lr: float, seed: int) -> List[float]:
    """AdamW with a cosine schedule on the cached tokens; the validation accuracy after every epoch."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(train[1]) + 63) // 64)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    accs = []
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(train[1])).split(64):
            loss = F.cross_entropy(model(train[0][idx]), train[1][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            accs.append(100.0 * (model(val[0]).argmax(-1) == val[1]).float().mean().item())
    return accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/minivideo/motion_order"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/motion_order_probe.json"))
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lrs", default="0.001,0.003", help="comma list of learning rates")
    parser.add_argument("--seeds", default="0,1", help="comma list of seeds")
    args = parser.parse_args()
    start = time.time()
    train, val = (cached_tokens(args.root, split, args.frames) for split in ("train", "validation"))
    dim, classes = train[0].shape[-1], int(train[1].max()) + 1
    results: Dict[str, Dict[str, List[float]]] = {}
    for kind in ("pool", "pool+temporal", "frames"):
        for lr in (float(x) for x in args.lrs.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                torch.manual_seed(seed)
                accs = train_head(head(kind, dim, 3, args.frames, classes), train, val, args.epochs, lr, seed)
                results.setdefault(kind, {})[f"lr{lr}-seed{seed}"] = accs
                print(f"{kind:14s} lr {lr:g} seed {seed}: val acc last {accs[-1]:.1f}, best {max(accs):.1f} "
                      f"(chance {100 / classes:.1f})")
    summary = {kind: {name: {"last": accs[-1], "best": max(accs)} for name, accs in runs.items()}
               for kind, runs in results.items()}
    record = {"command": "python benchmarks/motion_order_probe.py " + " ".join(
                  f"--{k} {v}" for k, v in vars(args).items()), "train_clips": len(train[1]),
              "val_clips": len(val[1]), "classes": classes, "tokens": list(train[0].shape[1:]),
              "seconds": round(time.time() - start), "summary": summary, "curves": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
