"""Where the time of the sparse DyT path goes: torch.profiler over one forward of a dense ViT and its DyT version.

    python benchmarks/profile_sparse.py --batch 32 --keep-rate 0.5 --variant mlp

Random weights, dispatchers calibrated on the profiled batch; prints the operators sorted by self CPU time.
"""
from __future__ import annotations

import argparse
import copy

import timm
import torch
from torch.profiler import ProfilerActivity, profile

import dytune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--keep-rate", type=float, default=0.5)
    parser.add_argument("--variant", default="mlp")
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, 224, 224)
    dense = timm.create_model(args.model, num_classes=100).eval()
    dyt = dytune.convert(copy.deepcopy(dense), dytune.DyTConfig(bottleneck=8, variant=args.variant)).eval()
    dytune.calibrate(dyt, images, args.keep_rate)
    for name, model in (("dense", dense), ("dyt", dyt)):
        with torch.inference_mode():
            model(images)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(images)
        print(f"== {name}, batch {args.batch}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
