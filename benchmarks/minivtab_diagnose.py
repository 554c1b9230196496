"""Where does DyT lose accuracy on mini-VTAB? Each trained dytune model of the suite evaluated twice.

For every finished run of a dytune-converted method (a registered method with adapter settings: the DyT variants
and AdaptFormer) in the suite folder: the test accuracy of its final weights in sparse inference (the suite's
number: skipped tokens skip the MLP) and in complete execution (the same weights with every token through every
MLP, i.e. the self-distillation teacher). If the two agree, skipping at inference is not what costs accuracy; the
difference to AdaptFormer then comes from training.

    python benchmarks/minivtab_diagnose.py --suite runs/minivtab-suite \
        --out docs/results/minivtab_sparse_vs_complete.json
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Dict, List

from tqdm import tqdm

from dytune.utils.io import atomic_write
from dytune.utils.tables import markdown_table
from dytune.engine.runs import evaluate_run
from dytune.methods import AdapterSettings, methods_reading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, default=Path("runs/minivtab-suite"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/minivtab_sparse_vs_complete.json"))
    parser.add_argument("--runs", default=None, help="comma list of suite run names (default: every dytune run)")
    args = parser.parse_args()
    wanted = set(args.runs.split(",")) if args.runs else None
    converted = set(methods_reading(AdapterSettings))
    runs = sorted(p.parent for p in args.suite.glob("*/*/seed*/results.json")
                  if (wanted is None or p.parts[-4] in wanted)
                  and json.loads(p.read_text())["method"] in converted)
    if not runs:
        raise SystemExit(f"{args.suite}: no finished run of {sorted(converted)} "
                         f"(expected <run>/<task>/seed*/results.json)")
    rows: List[Dict] = []
    for run in tqdm(runs, desc="evaluate", unit="run"):
        final = json.loads((run / "results.json").read_text())["final"]
        complete = evaluate_run(run, checkpoint="last", execution_mode="complete")
        rows.append({"run": run.parts[-3], "task": run.parts[-2], "seed": run.parts[-1],
                     "sparse_acc": final["acc"], "sparse_gmacs": final["gmacs"],
                     "complete_acc": complete["acc"], "complete_gmacs": complete["gmacs"]})
    summary = {}
    for name in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == name]
        summary[name] = {k: round(statistics.mean(r[k] for r in mine), 3)
                         for k in ("sparse_acc", "complete_acc", "sparse_gmacs", "complete_gmacs")}
        summary[name]["runs"] = len(mine)
    report = {"command": "python benchmarks/minivtab_diagnose.py --suite " + str(args.suite), "summary": summary,
              "rows": rows}
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))
    print(markdown_table(("run", "runs", "sparse acc", "complete acc", "sparse GMACs", "complete GMACs"),
                         [(name, s["runs"], f"{s['sparse_acc']:.2f}", f"{s['complete_acc']:.2f}",
                           f"{s['sparse_gmacs']:.4f}", f"{s['complete_gmacs']:.4f}") for name, s in summary.items()]))


if __name__ == "__main__":
    main()
