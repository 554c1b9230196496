"""Dense timm ViT vs DyT (MLP dispatch, about half the tokens kept) on one device: img/s and FLOPs-ideal ratio.

    python benchmarks/core_speed.py --model vit_base_patch16_224 --batch 32 --keep-rate 0.5

The backbone has random weights and the dispatchers are calibrated on the timed batch to the requested keep rate,
so the run needs no download. Prints a table and writes JSON next to it with --out.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
from pathlib import Path

import timm
import torch

import dytune
from dytune.bench import time_forward


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--keep-rate", type=float, default=0.5)
    parser.add_argument("--bottleneck", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, 224, 224)
    dense = timm.create_model(args.model, num_classes=100).eval()
    dyt = dytune.convert(copy.deepcopy(dense), dytune.DyTConfig(bottleneck=args.bottleneck)).eval()
    rates = dytune.calibrate(dyt, images, args.keep_rate)
    dense_macs = dytune.count_macs(dense, images).double().mean().item()
    dyt_macs = dytune.count_macs(dyt, images).double().mean().item()
    with torch.inference_mode(), dytune.execution(dyt, "masked"):
        masked = dyt(images)
    with torch.inference_mode():
        max_diff = (dyt(images) - masked).abs().max().item()
    t_dense = time_forward(dense, images, args.warmup, args.repeats)
    t_dyt = time_forward(dyt, images, args.warmup, args.repeats)
    result = {
        "model": args.model, "batch": args.batch, "device": "cpu", "threads": torch.get_num_threads(),
        "cpu": cpu_name(), "torch": torch.__version__, "timm": timm.__version__,
        "keep_rate": sum(rates) / len(rates), "dense_gmacs": dense_macs / 1e9, "dyt_gmacs": dyt_macs / 1e9,
        "dense": t_dense.to_dict(), "dyt": t_dyt.to_dict(),
        "speedup": t_dyt.images_per_s / t_dense.images_per_s, "flops_ideal_speedup": dense_macs / dyt_macs,
        "sparse_vs_masked_max_abs_diff": max_diff,
    }
    print(f"{args.model} batch {args.batch}, {result['threads']} threads, keep rate {result['keep_rate']:.3f}")
    print(f"{'model':<8}{'GMACs':>8}{'ms/batch':>12}{'img/s':>9}")
    for name, timing, macs in (("dense", t_dense, dense_macs), ("dyt", t_dyt, dyt_macs)):
        print(f"{name:<8}{macs / 1e9:>8.2f}{timing.median_ms:>9.0f}±{timing.spread_ms:<3.0f}{timing.images_per_s:>8.2f}")
    print(f"speed-up {result['speedup']:.3f}x, FLOPs-ideal {result['flops_ideal_speedup']:.3f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
