"""Training cost of DyT (two forward passes with distillation) against AdaptFormer at the same batch.

    python benchmarks/train_cost.py --model vit_base_patch16_224 --batch 8 --steps 4 --out docs/results/train_cost_cpu.json

Each method runs in its own process (so the peak resident memory on CPU is its own), on random images with the
engine's objective and optimiser step; the first step is a warm-up and not timed.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

COMPARED = ("adaptformer", "dyt-nodistill", "dyt")  # names in the method registry, dytune.methods.METHODS


def measure(method: str, model_name: str, batch: int, steps: int) -> dict:
    import timm
    import torch

    from dytune.run_config import TrainConfig
    from dytune.methods import METHODS as REGISTRY, build_objective
    from dytune.engine.optim import param_groups
    from dytune.engine.trainer import ObjectiveStep
    from dytune.utils.runtime import peak_memory_mb
    from dytune.tasks import build_task

    torch.manual_seed(0)
    cfg = TrainConfig(method=method, model=model_name, bottleneck=8)
    model = REGISTRY[method].apply(timm.create_model(model_name, num_classes=100), cfg.method_settings()).train()
    step = ObjectiveStep(model, build_objective(REGISTRY[method], build_task(cfg), cfg.method_settings()))
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=1e-3)
    images, targets = torch.randn(batch, 3, 224, 224), torch.randint(0, 100, (batch,))
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        loss, _ = step(images, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
    times.sort()
    return {"method": method, "step_time_s": times[len(times) // 2], "times_s": times,
            "peak_memory_mb": peak_memory_mb(torch.device("cpu")), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the per-method child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.model, args.batch, args.steps)))
        return
    from dytune.methods import METHODS

    unknown = [m for m in COMPARED if m not in METHODS]
    if unknown:
        raise SystemExit(f"train_cost.py: {unknown} not in the method registry ({', '.join(METHODS)})")
    rows = []
    for method in COMPARED:
        cmd = [sys.executable, __file__, "--model", args.model, "--batch", str(args.batch), "--steps", str(args.steps),
               "--one", method]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
    base = rows[0]
    print(f"{args.model}, batch {args.batch}, median of {args.steps} steps")
    print(f"{'method':<15}{'s/step':>8}{'x time':>8}{'peak MB':>10}{'x mem':>7}")
    for r in rows:
        r["time_vs_adaptformer"] = r["step_time_s"] / base["step_time_s"]
        r["memory_vs_adaptformer"] = r["peak_memory_mb"] / base["peak_memory_mb"]
        print(f"{r['method']:<15}{r['step_time_s']:>8.2f}{r['time_vs_adaptformer']:>8.2f}{r['peak_memory_mb']:>10.0f}"
              f"{r['memory_vs_adaptformer']:>7.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": args.model, "batch": args.batch, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
