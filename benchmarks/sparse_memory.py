"""Resident memory of sparse inference over many batches whose kept-token counts vary, with and without buckets.

The shipped mini backbone (`dytune_mini_vit`, MLP dispatch) runs `model.eval()` in sparse execution on batches of
random images whose contrast varies, each batch under one of five threshold sets calibrated to keep rates
0.3-0.7, so the number of kept tokens changes from batch to batch. Each bucket setting runs in its own subprocess
(no shared heap or kernel cache); every `--every` batches it records VmRSS from /proc/self/status.

    OMP_NUM_THREADS=1 python benchmarks/sparse_memory.py --batches 2000 --buckets 1,16 \\
        --out docs/results/sparse_memory.json --plot docs/results/sparse_memory.png
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

KEEP_RATES = (0.3, 0.4, 0.5, 0.6, 0.7)


def resident_mb() -> float:
    """This process's resident memory (VmRSS) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line in /proc/self/status (this benchmark needs Linux)")


@torch.inference_mode()
def worker(bucket: int, batches: int, batch_size: int, every: int, seed: int) -> None:
    """Run the sparse model and print one JSON line per record (batch, rss_mb, keep_rate)."""
    import timm

    import dytune
    from dytune.core.calibrate import calibrate, dispatchers

    torch.manual_seed(seed)
    model = dytune.convert(timm.create_model("dytune_mini_vit", pretrained=True)).eval()
    size = model.patch_embed.img_size
    gates = dispatchers(model)
    calibration = torch.randn(16, 3, *size)  # thresholds transfer to other images; 64 would cost minutes
    thresholds = []
    for rate in KEEP_RATES:
        calibrate(model, calibration, rate)
        thresholds.append([g.logit_threshold.clone() for g in gates])
    gen = torch.Generator().manual_seed(seed + 1)
    with dytune.execution(model, "sparse", bucket=bucket):
        for i in range(batches + 1):
            for gate, value in zip(gates, thresholds[int(torch.randint(len(KEEP_RATES), (1,), generator=gen))]):
                gate.logit_threshold.copy_(value)
            images = torch.randn(batch_size, 3, *size, generator=gen) * (0.5 + torch.rand(1, generator=gen))
            model(images)
            if i % every == 0:
                rate = sum(dytune.keep_rates(model)) / len(gates)
                print(json.dumps({"batch": i, "rss_mb": round(resident_mb(), 1), "keep_rate": round(rate, 4)}),
                      flush=True)


def run_all(args: argparse.Namespace) -> Dict[str, List[dict]]:
    """Start one worker per bucket (all at once when --jobs allows), show a progress bar, collect their records."""
    from tqdm import tqdm

    buckets = [int(b) for b in args.buckets.split(",")]
    records: Dict[str, List[dict]] = {str(b): [] for b in buckets}
    bar = tqdm(total=len(buckets) * (args.batches // args.every + 1), unit="record", desc="batches x buckets")
    pending = list(buckets)
    running: Dict[int, subprocess.Popen] = {}
    while pending or running:
        while pending and len(running) < args.jobs:
            b = pending.pop(0)
            running[b] = subprocess.Popen(
                [sys.executable, __file__, "--worker", "--bucket", str(b), "--batches", str(args.batches),
                 "--batch-size", str(args.batch_size), "--every", str(args.every), "--seed", str(args.seed)],
                stdout=subprocess.PIPE, text=True)
        for b, proc in list(running.items()):
            line = proc.stdout.readline()
            if line:
                records[str(b)].append(json.loads(line))
                bar.update(1)
                bar.set_postfix(bucket=b, rss_mb=records[str(b)][-1]["rss_mb"])
            elif proc.poll() is not None:
                if proc.returncode:
                    raise SystemExit(f"worker with bucket={b} failed (exit code {proc.returncode})")
                del running[b]
    bar.close()
    return records


def summarize(records: List[dict], warmup: int) -> dict:
    """RSS at the end of warm-up, at the end, and the growth after warm-up."""
    after = [r["rss_mb"] for r in records if r["batch"] >= warmup]
    start = after[0]
    return {"rss_start_mb": records[0]["rss_mb"], "rss_after_warmup_mb": start, "rss_end_mb": after[-1],
            "rss_max_after_warmup_mb": max(after), "growth_after_warmup": round(max(after) / start - 1, 4),
            "mb_per_batch_after_warmup": round((after[-1] - start) / max(records[-1]["batch"] - warmup, 1), 4)}


def plot(records: Dict[str, List[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for bucket, rows in records.items():
        label = "exact counts (bucket=1)" if bucket == "1" else f"bucket={bucket}"
        ax.plot([r["batch"] for r in rows], [r["rss_mb"] for r in rows], label=label)
    ax.set_xlabel("batch (64 images, sparse eval)")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_title("dytune_mini_vit sparse inference, keep rate 0.3-0.7 per batch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--every", type=int, default=20, help="record RSS every this many batches")
    parser.add_argument("--buckets", default="1,16", help="bucket settings to compare (1 = exact counts)")
    parser.add_argument("--warmup", type=int, default=200, help="batches before the growth is measured")
    parser.add_argument("--jobs", type=int, default=1, help="workers at once (each uses OMP_NUM_THREADS threads)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.bucket, args.batches, args.batch_size, args.every, args.seed)
        return
    start = time.time()
    records = run_all(args)
    summary = {b: summarize(rows, args.warmup) for b, rows in records.items()}
    for b, s in summary.items():
        print(f"bucket={b:>3}: RSS {s['rss_start_mb']:.0f} MiB at batch 0, {s['rss_after_warmup_mb']:.0f} after "
              f"{args.warmup}, {s['rss_end_mb']:.0f} at {args.batches} (max {s['rss_max_after_warmup_mb']:.0f}; "
              f"{100 * s['growth_after_warmup']:+.1f} % after warm-up, {s['mb_per_batch_after_warmup']:.3f} MiB/batch)")
    result = {"command": " ".join(sys.argv), "batches": args.batches, "batch_size": args.batch_size,
              "warmup": args.warmup, "keep_rates": KEEP_RATES, "seconds": round(time.time() - start),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "threads": torch.get_num_threads()},
              "summary": summary, "records": records}
    if args.out:
        from dytune.core.checkpoint import atomic_write

        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    if args.plot:
        plot(records, args.plot)


if __name__ == "__main__":
    main()
