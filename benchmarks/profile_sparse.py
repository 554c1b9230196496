"""Where the time of the sparse DyT path goes: torch.profiler over forwards of the models `dytune bench` times.

    python benchmarks/profile_sparse.py --batch 32
    python benchmarks/profile_sparse.py --batch 1 --methods dyt+logits,official --official-repo ~/Dynamic-Tuning

Random weights, dispatchers calibrated to `--keep-rate` (as in `dytune bench`); prints, per model, the operators
sorted by self CPU time and the time per image of the linear layers, attention, the patch convolution and the rest.
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from dytune.bench.runner import BenchSettings, build_models, images_for

GROUPS = {"linear layers (addmm)": ("aten::addmm",),
          "attention (SDPA)": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                               "aten::_scaled_dot_product_efficient_attention",
                               "aten::_scaled_dot_product_flash_attention"),
          "patch conv": ("aten::mkldnn_convolution", "aten::convolution")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--keep-rate", type=float, default=0.5)
    parser.add_argument("--variant", default="mlp")
    parser.add_argument("--methods", default="dense,dyt", help="comma list of `dytune bench` methods")
    parser.add_argument("--official-repo", default=None)
    parser.add_argument("--forwards", type=int, default=3, help="profiled forwards per model (after 2 untimed)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = BenchSettings(model=args.model, methods=tuple(args.methods.split(",")), variants=(args.variant,),
                             keep_rate=args.keep_rate, official_repo=args.official_repo)
    models = build_models(settings, torch.device("cpu"))
    images = images_for(next(iter(models.values())).model, args.batch, settings.seed + 2, torch.device("cpu"))
    for name, entry in models.items():
        with torch.inference_mode():
            for _ in range(2):
                entry.model(images)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.forwards):
                    entry.model(images)
        events = prof.key_averages()
        per_image = 1e-3 / (args.forwards * args.batch)  # profiler times are in microseconds
        total = sum(e.self_cpu_time_total for e in events) * per_image
        parts = {group: sum(e.self_cpu_time_total for e in events if e.key in keys) * per_image
                 for group, keys in GROUPS.items()}
        print(f"== {name}, batch {args.batch}, {args.forwards} forwards")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
        print(f"per image: total {total:.1f} ms; " + "; ".join(f"{k} {v:.1f}" for k, v in parts.items())
              + f"; everything else {total - sum(parts.values()):.1f}\n")


if __name__ == "__main__":
    main()
