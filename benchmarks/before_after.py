"""Sparse-path speed of two dytune revisions side by side in one process, with the dense timm model.

    git archive 4788ee7 dytune | tar -x -C /tmp/before
    python benchmarks/before_after.py --before /tmp/before/dytune --batch 32 --rounds 10

Both revisions convert the same random-weight ViT (MLP dispatch, bottleneck 8, adapters randomised as after training)
and share calibrated thresholds; every round times dense, before and after in turn, so the machine's slow spells hit
all three. Reports medians and minima of the latencies and the median of the per-round speed-ups.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import timm
import torch

import dytune
from dytune.bench.timing import time_interleaved


def load_package(name: str, path: Path):
    """Import the dytune package at `path` under another name."""
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="dytune package directory of the old revision")
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--keep-rate", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    before = load_package("dytune_before", args.before)
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, 224, 224)
    dense = timm.create_model(args.model, num_classes=100).eval()
    after = dytune.convert(copy.deepcopy(dense), dytune.DyTConfig(bottleneck=8)).eval()
    with torch.no_grad():
        for name, p in after.named_parameters():
            if "adapter" in name:
                p.normal_(0.0, 0.02)
    rates = dytune.calibrate(after, images, args.keep_rate, per_layer=True)
    old = before.convert(copy.deepcopy(dense), before.DyTConfig(bottleneck=8)).eval()
    old.load_state_dict(after.state_dict())
    models = {"dense": dense, "before": old, "after": after}
    with torch.inference_mode():
        diff = (after(images) - old(images)).abs().max().item()
    timings = time_interleaved(models, images, warmup=1, repeats=args.rounds)
    times = {name: timing.times_ms for name, timing in timings.items()}
    dense_macs = dytune.count_macs(dense, images).double().mean().item()
    dyt_macs = dytune.count_macs(after, images).double().mean().item()
    result = {"model": args.model, "batch": args.batch, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "keep_rate": sum(rates) / len(rates), "flops_ideal_speedup": dense_macs / dyt_macs,
              "max_abs_diff_before_after": diff, "times_ms": times, "argv": sys.argv}
    print(f"{args.model} batch {args.batch}, {result['threads']} threads, keep rate {result['keep_rate']:.3f}, "
          f"FLOPs-ideal {result['flops_ideal_speedup']:.3f}x, |after - before| {diff:.1e}")
    for name, t in times.items():
        print(f"{name:<8} median {statistics.median(t):9.1f} ms   min {min(t):9.1f} ms")
    for name in ("before", "after"):
        ratios = [d / m for d, m in zip(times["dense"], times[name])]
        result[f"{name}_speedup_median_of_rounds"] = statistics.median(ratios)
        result[f"{name}_speedup_of_medians"] = statistics.median(times["dense"]) / statistics.median(times[name])
        result[f"{name}_speedup_of_minima"] = min(times["dense"]) / min(times[name])
        print(f"{name:<8} speed-up: median of rounds {result[f'{name}_speedup_median_of_rounds']:.3f}x, "
              f"of medians {result[f'{name}_speedup_of_medians']:.3f}x, "
              f"of minima {result[f'{name}_speedup_of_minima']:.3f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
