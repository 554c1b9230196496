"""Would another CPU matmul kernel speed up the MLP on the kept tokens? MKL (torch's default) against oneDNN.

The ViT-B MLP (layer norm, fc1, GELU, fc2) on M token rows, three ways, taking turns: torch's default path as
dytune runs it (addmm through MKL, GELU in place), oneDNN's linear with the GELU fused into fc1, and oneDNN for both
linears. Batch 1 gives about 100 kept rows at keep rate 0.5 (197 for dense), batch 32 about 3,200.

    python benchmarks/kernel_choice.py --rows 50,100,197,1600,3200,6304 --out docs/results/kernel_choice_cpu.json
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from dytune.bench.timing import time_interleaved
from dytune.utils.io import atomic_write


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="50,100,197,1600,3200,6304")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--hidden", type=int, default=3072)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not torch.backends.mkldnn.is_available():
        raise SystemExit("this torch build has no oneDNN (torch.backends.mkldnn.is_available() is False)")
    torch.manual_seed(0)
    c, h = args.dim, args.hidden
    w1, b1 = torch.randn(h, c) * 0.02, torch.randn(h) * 0.02
    w2, b2 = torch.randn(c, h) * 0.02, torch.randn(c) * 0.02
    gamma, beta = torch.randn(c), torch.randn(c)
    onednn = torch.ops.mkldnn._linear_pointwise

    def default(x: torch.Tensor) -> torch.Tensor:
        hidden = F.linear(F.layer_norm(x, (c,), gamma, beta), w1, b1)
        return F.linear(torch.ops.aten.gelu_(hidden), w2, b2)

    def fused_fc1(x: torch.Tensor) -> torch.Tensor:
        return F.linear(onednn(F.layer_norm(x, (c,), gamma, beta), w1, b1, "gelu", [], "none"), w2, b2)

    def onednn_both(x: torch.Tensor) -> torch.Tensor:
        hidden = onednn(F.layer_norm(x, (c,), gamma, beta), w1, b1, "gelu", [], "none")
        return onednn(hidden, w2, b2, "none", [], "")

    rows = []
    for m in (int(v) for v in args.rows.split(",")):
        x = torch.randn(m, c)
        diff = (default(x) - onednn_both(x)).abs().max().item()
        timings = time_interleaved({"mkl": default, "onednn_fused_fc1": fused_fc1, "onednn_both": onednn_both}, x,
                                   warmup=1, repeats=40 if m < 1000 else 6)
        ms = {name: t.median_ms for name, t in timings.items()}
        rows.append({"rows": m, **{f"{k}_ms": v for k, v in ms.items()}, "max_abs_diff": diff})
        print(f"M={m:5d}  MKL {ms['mkl']:8.3f} ms  oneDNN fused fc1 {ms['onednn_fused_fc1']:8.3f}  "
              f"oneDNN both {ms['onednn_both']:8.3f}  (MKL/oneDNN both {ms['mkl'] / ms['onednn_both']:.3f}x)",
              flush=True)
    if args.out:
        report = {"command": "python benchmarks/kernel_choice.py --rows " + args.rows, "torch": torch.__version__,
                  "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                  "rows": rows}
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))


if __name__ == "__main__":
    main()
