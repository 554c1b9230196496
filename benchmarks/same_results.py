"""Do two dytune revisions train the same models? Short runs whose weights and results must match bit for bit.

    git worktree add /tmp/before <rev>
    python benchmarks/same_results.py --tree /tmp/before --out /tmp/before.json
    python benchmarks/same_results.py --tree . --out /tmp/after.json
    python benchmarks/same_results.py --compare /tmp/before.json /tmp/after.json

Each revision runs in its own interpreter (`PYTHONPATH=<tree>`), one thread: `dytune pretrain` on the single-item,
the multi-task and the head-only source (a few steps of batch 16; sha256 of the final weights, the log's losses and
accuracies, the held-out accuracy) and `dytune train` of dyt, adaptformer, linear, dyt-moe and lora on two mini-VTAB
tasks (2 epochs; sha256 of the trained tensors and results.json's metrics, keep rates and MACs; throughput left
out). Needs Fashion-MNIST and `dytune minivtab --root data/minivtab`.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

PRETRAIN_COMMON = ["--batch-size", "16", "--epochs", "0.006", "--eval-size", "200", "--ckpt-every", "10"]
PRETRAIN_RUNS = {
    "single": ["--curriculum-epochs", "0.002", "--warmup-epochs", "0.001"],
    "multi": ["--curriculum-epochs", "0", "--max-items", "3", "--single-share", "0.25", "--full-rotation", "0.3",
              "--aux-weight", "0.3", "--patch-weight", "0.3", "--seed", "2"],
    "head": ["--init", "{multi}/last.pt", "--head-only", "--seed", "3", "--curriculum-epochs", "0", "--lr", "1e-3"],
}
METHODS = ["dyt", "adaptformer", "linear", "dyt-moe", "lora"]
TASKS = ["digits", "count"]
VOLATILE = ("images_per_s", "images_per_s_spread", "threads", "step_time_s", "peak_memory_mb")


def _digest(tensors: Dict[str, Any]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].contiguous().numpy().tobytes())
    return h.hexdigest()


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    return value


def run(tree: Path, root: Path, work: Path) -> Dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "OMP_NUM_THREADS": "1"}
    dytune = [sys.executable, "-m", "dytune"]
    report: Dict[str, Any] = {}
    for name, extra in PRETRAIN_RUNS.items():
        out = work / f"pretrain_{name}"
        args = [a.format(multi=work / "pretrain_multi") for a in extra]
        subprocess.run([*dytune, "pretrain", "--out", str(out), *PRETRAIN_COMMON, *args], env=env, check=True,
                       capture_output=True)
        # last.pt before pretrain used the engine's run folder, last/state.pt after
        state = torch.load(out / "last.pt" if (out / "last.pt").is_file() else out / "last" / "state.pt",
                           weights_only=True)
        with open(out / "log.csv", newline="") as f:
            log = [{k: r[k] for k in ("step", "lr", "train_loss", "train_acc", "test_acc")} for r in csv.DictReader(f)]
        report[f"pretrain/{name}"] = {"weights": _digest({**state["model"], **state.get("aux", {})}), "log": log,
                                      "test_acc": json.loads((out / "summary.json").read_text())["test_acc"]}
        print(name, report[f"pretrain/{name}"]["weights"][:16], flush=True)
    for method in METHODS:
        for task in TASKS:
            out = work / f"train_{method}_{task}"
            subprocess.run([*dytune, "train", "dataset=vtab", f"data_root={root}", f"task={task}", "img_size=64",
                            "model=dytune_mini_vit", "pretrained=true", "cache_images=true", "num_workers=0",
                            "epochs=2", "batch_size=64", "lr=0.01", "warmup_epochs=1", "eval_every=2",
                            f"method={method}", "bottleneck=8", "lora_rank=4", "experts=2", "device=cpu",
                            f"output_dir={out}"], env=env, check=True, capture_output=True)
            results = json.loads((out / "results.json").read_text())
            weights = load_file(str(next((out / "last").glob("*.safetensors"))))
            report[f"train/{method}/{task}"] = {"weights": _digest(weights), "final": _stable(results["final"]),
                                                "dense_gmacs": results["dense_gmacs"]}
            print(method, task, results["final"][results["metric"]], report[f"train/{method}/{task}"]["weights"][:16],
                  flush=True)
    return report


def compare(a: Path, b: Path) -> int:
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    differ: List[str] = [k for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)]
    for key in sorted(set(ra) | set(rb)):
        print(f"{'same' if key not in differ else 'DIFFERENT'}  {key}")
    print(f"{len(ra) - len(differ)} of {len(ra)} identical")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=Path("."), help="a dytune checkout (its dytune/ is imported)")
    parser.add_argument("--root", type=Path, default=Path("data/minivtab"), help="mini-VTAB data")
    parser.add_argument("--out", type=Path, help="where to write the report (JSON)")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"), help="compare two reports and exit")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("--out is required unless --compare")
    with tempfile.TemporaryDirectory() as work:
        report = run(args.tree, args.root.resolve(), Path(work))
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
