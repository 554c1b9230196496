"""Sparse speed with bucketed gathered shapes against exact kept-token counts, interleaved in one process.

One converted model (MLP dispatch, adapters randomised as after training, dispatchers calibrated to keep rate 0.5)
runs the same batch with `dytune.execution(model, "sparse", bucket=1)` (exact counts) and with `bucket=B`, taking
turns in every round, so the shared machine's slow spells hit both. Reports the medians and the per-round
speed-ups (bucketed over exact) with their spread.

    OMP_NUM_THREADS=1 python benchmarks/bucket_speed.py --model vit_base_patch16_224 --batch-sizes 1,32 \\
        --out docs/results/bucket_speed_vit_b16.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import timm
import torch

import dytune
from dytune.bench.timing import time_interleaved
from dytune.core.checkpoint import atomic_write
from dytune.utils.runtime import relative_spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_base_patch16_224", help="timm model (dytune_mini_vit: the shipped one)")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--bucket", type=int, default=dytune.core.modules.tokens.DEFAULT_BUCKET)
    parser.add_argument("--keep-rate", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = dytune.convert(timm.create_model(args.model, pretrained=args.model == "dytune_mini_vit"),
                           dytune.DyTConfig(bottleneck=8))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter" in name:
                p.normal_(std=0.02)
    model.eval()
    size = model.patch_embed.img_size
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        images = torch.randn(batch, 3, *size)
        dytune.calibrate(model, images, args.keep_rate)

        def run(bucket: int):
            def forward(x: torch.Tensor) -> torch.Tensor:
                with dytune.execution(model, "sparse", bucket=bucket):
                    return model(x)
            return forward

        with torch.no_grad():
            exact, bucketed = run(1)(images), run(args.bucket)(images)
        timings = time_interleaved({"exact": run(1), "bucketed": run(args.bucket)}, images, warmup=args.warmup,
                                   repeats=args.repeats)
        speedups = timings["bucketed"].speedups_over(timings["exact"])
        kept = [int(m.sum()) + batch * model.num_prefix_tokens for m in dytune.keep_masks(model)]
        padded = [dytune.core.modules.tokens.bucketed(k, args.bucket) for k in kept]
        row = {"batch": batch, "exact_ms": timings["exact"].median_ms, "bucketed_ms": timings["bucketed"].median_ms,
               "speedup_median": statistics.median(speedups), "speedup_spread": relative_spread(speedups),
               "speedups": speedups, "padding_rows": sum(padded) / sum(kept) - 1,
               "max_abs_diff": (exact - bucketed).abs().max().item(),
               "timings": {k: t.to_dict() for k, t in timings.items()}}
        rows.append(row)
        print(f"batch {batch:3d}: exact {row['exact_ms']:8.1f} ms  "
              f"bucket={args.bucket} {row['bucketed_ms']:8.1f} ms  "
              f"bucketed/exact speed {row['speedup_median']:.3f}x ± {100 * row['speedup_spread']:.1f} %  "
              f"(padding {100 * row['padding_rows']:.1f} % of MLP rows, max diff {row['max_abs_diff']:.1e})", flush=True)
    if args.out:
        result = {"command": " ".join(sys.argv), "model": args.model, "bucket": args.bucket,
                  "keep_rate": args.keep_rate, "threads": torch.get_num_threads(),
                  "machine": {"platform": platform.platform(), "torch": torch.__version__}, "rows": rows}
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))


if __name__ == "__main__":
    main()
