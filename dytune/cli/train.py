"""`dytune train`, `dytune eval`, `dytune vtab` (all 19 tasks) and `dytune vtab-summary`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

from ..run_config import TrainConfig
from .argtypes import keep_rates_arg
from ..utils.distributed import is_main_process
from ..utils.io import atomic_write
from ..utils.tables import markdown_table


def write_text(path: Path, text: str) -> None:
    """Write a result file atomically (readers never see half of it), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    if name == "train":
        p = sub.add_parser(name, help="train one run", description="Train one run. Settings come from YAML files "
                           "(-c, later files win) and key=value overrides; `--help-config` lists them.")
        p.add_argument("-c", "--config", action="append", default=[], help="YAML preset (repeatable)")
        p.add_argument("overrides", nargs="*", help="key=value settings")
        p.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last epoch")
        p.add_argument("--help-config", action="store_true", help="list every setting and exit")
        p.set_defaults(run=run_train)
    elif name == "eval":
        p = sub.add_parser(name, help="evaluate a finished run", description="Rebuild a run's model from its "
                           "checkpoint and evaluate it (key=value overrides, e.g. eval_split=val200).")
        p.add_argument("run_dir", type=Path)
        p.add_argument("overrides", nargs="*")
        p.add_argument("--checkpoint", choices=("best", "last"), default="last")
        p.add_argument("--execution", choices=("sparse", "masked", "complete", "capacity"), default=None,
                       help="DyT runs: evaluate in this mode; 'complete' runs every token through every sub-block, "
                            "'capacity' keeps a fixed top-k per image and dispatcher (as `dytune export`)")
        p.add_argument("--capacity", type=float, default=None, metavar="RATE",
                       help="with --execution capacity: calibrate to this mean keep rate (default: each "
                            "dispatcher's keep rate with the trained thresholds, on --calibration-images)")
        p.add_argument("--budgets", type=keep_rates_arg, default=None, metavar="R,R,...",
                       help="DyT runs: also score the model calibrated to each of these mean keep rates, without "
                            "retraining (accuracy vs compute)")
        p.add_argument("--per-layer", action="store_true",
                       help="with --budgets: every dispatcher keeps the same rate (default: one shared threshold "
                            "shift, which keeps the trained model's per-layer preferences)")
        p.add_argument("--calibration-images", type=int, default=64, help="with --budgets or --execution capacity: "
                       "training images the thresholds (capacities) are calibrated (measured) on")
        p.add_argument("--out", type=Path, default=None, help="with --budgets: also write the curve as JSON here")
        p.set_defaults(run=run_eval)
    elif name == "vtab":
        p = sub.add_parser(name, help="train every VTAB-1K task", description="Run one training per task "
                           "(finished tasks are skipped, interrupted ones resumed), spread over the GPUs found, or "
                           "one after another on CPU, with the loop of `dytune suite`.")
        p.add_argument("-c", "--config", action="append", default=[])
        p.add_argument("overrides", nargs="*")
        p.add_argument("--tasks", nargs="*", default=None, help="task folders (default: the 19 VTAB-1K tasks)")
        p.add_argument("--output", type=Path, default=Path("runs/vtab"), help="runs go to OUTPUT/<task>")
        p.add_argument("--gpus", type=int, default=None, help="parallel jobs, one GPU each (default: all GPUs)")
        p.add_argument("--jobs", type=int, default=None, metavar="K",
                       help="K run processes at a time, shared among the GPUs (default: one per GPU; one on CPU)")
        p.set_defaults(run=run_vtab)
    elif name == "vtab-summary":
        p = sub.add_parser(name, help="table of finished VTAB-1K runs", description="Summarise finished runs as "
                           "the paper's Table 3, with both averaging conventions.")
        p.add_argument("runs", type=Path, nargs="+", help="folders holding <task>/results.json")
        p.add_argument("--metric", choices=("final", "best"), default="final",
                       help="final-epoch accuracy, or the best epoch's (the official code's choice, selected on test)")
        p.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
        p.set_defaults(run=run_vtab_summary)


def run_train(args: argparse.Namespace) -> int:
    if args.help_config:
        print(TrainConfig.help())
        return 0
    from ..engine.trainer import train

    cfg = TrainConfig.load(args.config, args.overrides)  # every setting checked before anything is written
    results = train(cfg, resume=args.resume)
    if results["final"] and is_main_process():
        print(results_table(results))
    return 0


def results_table(results: dict) -> str:
    """A markdown row per checkpoint (final epoch and best epoch) of one run."""
    rows = []
    for name in ("final", "best"):
        m = results[name]
        if not m:
            continue
        keep = f"{m['keep_rate']:.3f}" if "keep_rate" in m else "1 (no dispatcher)"
        rows.append([f"{results['method']} {name}", m.get("epoch", results["epochs_done"]),
                     f"{m[results['metric']]:.2f}", keep, f"{m['gmacs']:.3f} ({m.get('gmacs_pct_dense', 100):.1f} %)",
                     f"{m['images_per_s']:.1f}", f"{results['trainable_params']:,}"])
    return markdown_table(["run", "epoch", results["metric"], "keep rate", "GMACs (% dense)", "img/s",
                           "trainable params"], rows)


def format_budget_curve(rows: List[Dict[str, Any]]) -> str:
    """The rows of `budget_curve_run` as a Markdown table."""
    metric = rows[0].get("metric", "acc") if rows else "acc"
    cells = []
    for row in rows:
        target = "as trained" if row["target_keep_rate"] is None else f"keep {row['target_keep_rate']:.2f}"
        cells.append([target, f"{row.get('keep_rate', 1.0):.3f}", f"{row[metric]:.2f}", f"{row['gmacs']:.4f}",
                      f"{row.get('gmacs_pct_dense', float('nan')):.1f}", f"{row['images_per_s']:.0f}"])
    return markdown_table(["thresholds", "keep rate", f"{metric} %", "GMACs", "% dense MACs", "img/s"], cells)


def run_eval(args: argparse.Namespace) -> int:
    from ..engine.runs import budget_curve_run, evaluate_run

    if args.budgets is None:
        metrics = evaluate_run(args.run_dir, tuple(args.overrides), args.checkpoint, args.execution, args.capacity,
                               args.calibration_images)
        if is_main_process():  # under torchrun every rank has the metrics; one JSON document on stdout
            print(json.dumps(metrics, indent=2))
        return 0
    if args.execution is not None:
        raise ValueError("dytune eval: --budgets scores sparse inference; leave out --execution")
    rows = budget_curve_run(args.run_dir, args.budgets, tuple(args.overrides), args.checkpoint,
                            args.calibration_images, args.per_layer)
    if not is_main_process():
        return 0
    print(format_budget_curve(rows))
    if args.out is not None:
        report = {"run_dir": str(args.run_dir), "checkpoint": args.checkpoint, "per_layer": args.per_layer,
                  "calibration_images": args.calibration_images, "rows": rows}
        write_text(args.out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def run_vtab(args: argparse.Namespace) -> int:
    """Train every VTAB-1K task: a plan of one run per task (each config checked before anything trains), trained by
    the suite's loop (`orchestrator.train_plan`), one `dytune train` process per task."""
    import torch

    from ..tasks.classification.vtab import VTAB_CLASSES
    from ..engine.orchestrator import train_plan

    tasks = args.tasks or list(VTAB_CLASSES)
    plan = [(task, TrainConfig.load(args.config, [*args.overrides, f"task={task}", f"output_dir={args.output / task}"]))
            for task in tasks]
    gpus = args.gpus if args.gpus is not None else torch.cuda.device_count()
    failed = train_plan(plan, gpus=gpus, jobs=args.jobs, label=lambda task, cfg: task, announce_skipped=True)
    return 1 if failed else 0


def run_vtab_summary(args: argparse.Namespace) -> int:
    from ..engine.summary import vtab_table

    table = vtab_table(args.runs, args.metric)
    print(table)
    if args.out:
        write_text(args.out, table + "\n")
    return 0
