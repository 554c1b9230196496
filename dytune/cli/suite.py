"""`dytune suite`: the command line of a benchmark suite (what it does: `dytune.engine.suite`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import suite


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="run a benchmark suite", description=suite.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", type=Path, help="suite YAML, e.g. configs/minivtab_suite.yaml")
    p.add_argument("overrides", nargs="*", help="key=value settings applied to every run (e.g. epochs=2)")
    p.add_argument("--report-only", action="store_true", help="only rebuild the CSV, table and plot")
    p.add_argument("--search-only", action="store_true",
                   help="with a grid: only train the search runs and write selection.csv / selection.md")
    p.add_argument("--only", nargs="+", default=None, metavar="RUN", help="train only these runs of the suite")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                   help="train only these seeds of each run (e.g. --seeds 0 for a first pass)")
    p.add_argument("--gpus", type=int, default=None, metavar="N",
                   help="train each run in a `dytune train` process of its own, N at a time, one GPU each (0: one "
                        "after another on CPU; default: every run in this process, one after another)")
    p.add_argument("--jobs", type=int, default=None, metavar="K",
                   help="with --gpus: K run processes at a time, shared among the GPUs (each new one goes to the GPU "
                        "running the fewest; small models leave a GPU idle), or side by side on CPU with --gpus 0")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return suite.train_suite(args.suite, args.overrides, args.report_only, args.search_only, args.only, args.seeds,
                             args.gpus, args.jobs)
