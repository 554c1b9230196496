"""Accuracy against compute without retraining: the suite's DyT models re-calibrated to other keep rates.

Each finished run of `--run` (default dyt-r0.5) is scored on its test split as trained and after `dytune.calibrate`
sets its thresholds (on 64 training images) to each keep rate of `--budgets`, with one shared threshold shift
(global) and, for seed 0, with the same rate for every dispatcher (per layer). The curves are compared with the
models trained at those rates and with AdaptFormer, from the suite's results.csv.

    python benchmarks/minivtab_budget.py --suite runs/minivtab-suite --results docs/minivtab/results.csv \
        --out docs/minivtab/budget_curve.json --plot docs/minivtab/budget_curve.png

Resumable: finished (run, mode) curves in `--out` are kept and skipped.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import Any, Dict, List

from tqdm import tqdm

from dytune.utils.io import atomic_write
from dytune.engine.runs import budget_curve_run


def _mean_curve(curves: List[List[Dict[str, Any]]]) -> List[Dict[str, float]]:
    """Row-wise mean over runs of (accuracy, % dense MACs, keep rate); rows line up by target keep rate."""
    return [{"target_keep_rate": rows[0]["target_keep_rate"],
             "acc": statistics.mean(r["acc"] for r in rows),
             "gmacs_pct_dense": statistics.mean(r["gmacs_pct_dense"] for r in rows),
             "keep_rate": statistics.mean(r.get("keep_rate", 1.0) for r in rows), "runs": len(rows)}
            for rows in zip(*curves, strict=True)]


def _trained_points(results: Path) -> Dict[str, Dict[str, float]]:
    """Mean accuracy and % dense MACs per suite run name (all tasks and seeds) from results.csv."""
    table: Dict[str, List[Dict[str, str]]] = {}
    with results.open() as f:
        for row in csv.DictReader(f):
            table.setdefault(row["run"], []).append(row)
    return {name: {"acc": statistics.mean(float(r["acc"]) for r in rows),
                   "gmacs_pct_dense": statistics.mean(float(r["gmacs_pct_dense"]) for r in rows)}
            for name, rows in table.items()}


def plot(summary: Dict[str, Any], trained: Dict[str, Dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = {"global": ("o-", "one shared threshold shift"), "per_layer": ("s--", "same keep rate in every layer")}
    for mode, rows in summary.items():
        marker, label = styles[mode]
        curve = [r for r in rows if r["target_keep_rate"] is not None]
        ax.plot([r["gmacs_pct_dense"] for r in curve], [r["acc"] for r in curve], marker,
                label=f"DyT r=0.5, re-calibrated: {label} ({curve[0]['runs']} runs)")
    for name, point in trained.items():
        if name.startswith("dyt-r") or name in ("adaptformer", "linear"):
            ax.plot(point["gmacs_pct_dense"], point["acc"], "k^" if name.startswith("dyt") else "kD")
            ax.annotate(f"{name} (trained)", (point["gmacs_pct_dense"], point["acc"]), textcoords="offset points",
                        xytext=(4, 5), fontsize=8)
    ax.set_xlabel("MACs per image, % of the dense backbone")
    ax.set_ylabel("mean test accuracy over 7 mini-VTAB tasks (%)")
    ax.set_title("Accuracy vs compute without retraining (dytune.calibrate)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, default=Path("runs/minivtab-suite"))
    parser.add_argument("--run", default="dyt-r0.5", help="suite run name whose models are re-calibrated")
    parser.add_argument("--budgets", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    parser.add_argument("--results", type=Path, default=Path("docs/minivtab/results.csv"))
    parser.add_argument("--out", type=Path, default=Path("docs/minivtab/budget_curve.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/minivtab/budget_curve.png"))
    args = parser.parse_args()
    budgets = [float(v) for v in args.budgets.split(",")]
    runs = sorted(p.parent for p in (args.suite / args.run).glob("*/seed*/results.json"))
    if not runs:
        raise SystemExit(f"{args.suite / args.run}: no finished run (expected <task>/seed*/results.json)")
    report = json.loads(args.out.read_text()) if args.out.is_file() else {"curves": {}}
    if report.get("budgets", budgets) != budgets:
        raise SystemExit(f"{args.out} holds budgets {report['budgets']}, not {budgets}; pass another --out")
    jobs = [(run, "global") for run in runs] + [(run, "per_layer") for run in runs if run.name == "seed0"]
    for run, mode in tqdm(jobs, desc="budget curves", unit="run"):
        key = f"{run.parent.name}/{run.name}/{mode}"
        if key in report["curves"]:
            continue
        rows = budget_curve_run(run, budgets, per_layer=mode == "per_layer")
        report["curves"][key] = [{k: r.get(k) for k in ("target_keep_rate", "keep_rate", "acc", "gmacs",
                                                         "gmacs_pct_dense", "images_per_s", "keep_rates")}
                                 for r in rows]
        report.update(command="python benchmarks/minivtab_budget.py --suite " + str(args.suite), run=args.run,
                      budgets=budgets)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))
    summary = {}
    for mode in ("global", "per_layer"):
        curves = [rows for key, rows in report["curves"].items() if key.endswith("/" + mode)]
        if curves:
            summary[mode] = _mean_curve(curves)
    report["summary"] = summary
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))
    trained = _trained_points(args.results) if args.results.is_file() else {}
    plot(summary, trained, args.plot)
    for mode, rows in summary.items():
        print(f"\n{mode} ({rows[0]['runs']} runs): | thresholds | keep rate | mean acc % | % dense MACs |")
        for r in rows:
            target = "as trained" if r["target_keep_rate"] is None else f"keep {r['target_keep_rate']:.1f}"
            print(f"| {target} | {r['keep_rate']:.3f} | {r['acc']:.2f} | {r['gmacs_pct_dense']:.1f} |")
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
