"""`dytune demo`: DyT on one mini-VTAB task with the shipped mini backbone, in a few minutes on a laptop CPU.

Builds (or reuses) the task, trains DyT (adapters + dispatchers + head) on its 1,000 training images, and reports
accuracy, keep rate per layer, MACs and measured img/s against the dense backbone, plus a picture of which patches
skipped the MLP in which layer.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

import timm
import torch

from .bench.timing import time_interleaved
from .data.minivtab import TASKS, build_minivtab
from .engine.config import TrainConfig
from .distributed import teardown
from .engine.runs import load_run
from .engine.trainer import STATE, train
from .flops import count_macs
from .pretrained import mini_vit_info
from .viz import plot_skip_maps


def demo_config(args: argparse.Namespace) -> TrainConfig:
    info = mini_vit_info()
    size = info["timm_kwargs"].get("img_size", 64)
    return TrainConfig(
        dataset="vtab", data_root=str(args.data_root), task=args.task, img_size=size, mean=info["mean"],
        std=info["std"], cache_images=True, num_workers=0, model="dytune_mini_vit", pretrained=True, method="dyt",
        bottleneck=8, adapter_scale=1.0, target_rate=args.target_rate, epochs=args.epochs, batch_size=64, lr=args.lr,
        weight_decay=1e-4, warmup_epochs=min(2.0, args.epochs / 5), min_lr=1e-5, seed=args.seed,
        output_dir=str(args.out / args.task), eval_every=args.epochs,
    )


def speed(model: torch.nn.Module, dense: torch.nn.Module, images: torch.Tensor, repeats: int) -> Dict[str, Any]:
    """Interleaved timings of the dense backbone and DyT on the same batch (medians of `repeats`)."""
    timings = time_interleaved({"dense": dense, "dyt": model}, images, warmup=1, repeats=repeats)
    dense_ms, dyt_ms = timings["dense"].median_ms, timings["dyt"].median_ms
    return {"batch": images.shape[0], "dense_img_s": timings["dense"].images_per_s,
            "dyt_img_s": timings["dyt"].images_per_s, "speedup": dense_ms / dyt_ms}


def run(args: argparse.Namespace) -> int:
    build_minivtab(args.data_root, tasks=[args.task], n_train=args.train_images, n_val=args.train_images // 4,
                   n_test=args.test_images)
    cfg = demo_config(args)
    out = Path(cfg.output_dir)
    if (out / "results.json").is_file():
        print(f"reusing the finished run in {out} (delete it to train again)")
        results = json.loads((out / "results.json").read_text())
    else:
        results = train(cfg, resume=(out / "last" / STATE).is_file())
    try:
        run = load_run(out, checkpoint="last")
    finally:
        teardown()
    model = run.model.eval()
    dense = timm.create_model("dytune_mini_vit", pretrained=True).eval()
    loader = torch.utils.data.DataLoader(run.loader.dataset, batch_size=args.speed_batch)
    images, labels = next(iter(loader))
    with torch.no_grad():
        dense_macs = count_macs(dense, images).double().mean().item()
        dyt_macs = count_macs(model, images).double().mean().item()
    timing = speed(model, dense, images, args.repeats)
    picture = plot_skip_maps(model, images[:6], out / "skip_map.png", cfg.mean, cfg.std,
                             titles=[f"label {int(t)}" for t in labels[:6]])
    final = results["final"]
    task = TASKS[args.task]
    print(f"\nDyT on mini-VTAB '{args.task}' ({len(task.classes)} classes: {task.description}) with the mini backbone "
          f"({mini_vit_info()['source_task'].split(' (')[0]}):")
    print(f"  test accuracy          {final['acc']:.2f} % on {final['images']} images")
    print("  keep rate per layer    " + " ".join(f"{r:.2f}" for r in final["keep_rates"])
          + f"   (mean {final['keep_rate']:.2f}, target {cfg.target_rate})")
    print(f"  MACs per image         DyT {dyt_macs / 1e6:.1f} M vs dense backbone {dense_macs / 1e6:.1f} M "
          f"({100 * dyt_macs / dense_macs:.0f} %)")
    print(f"  measured speed         DyT {timing['dyt_img_s']:.0f} img/s vs dense {timing['dense_img_s']:.0f} img/s "
          f"(x{timing['speedup']:.2f}, batch {timing['batch']}, {torch.get_num_threads()} threads)")
    print(f"  trainable parameters   {results['trainable_params']:,}")
    print(f"  skip map               {picture}")
    return 0


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="train DyT on a mini-VTAB task and show what it skips", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="digits", choices=sorted(TASKS))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-2,
                   help="learning rate (the suite's, chosen on the AdaptFormer baseline: docs/minivtab.md)")
    p.add_argument("--target-rate", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, default=Path("data/minivtab"))
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--train-images", type=int, default=800, help="training images (plus a quarter for validation)")
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--speed-batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(run=run)
