"""`dytune demo`: the command line of the end-to-end demo (what it does: `dytune.mini.demo`)."""
from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from ..mini import demo
from ..mini.demo import DEMOS, DemoOptions

_DEFAULTS = DemoOptions()


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="train DyT on a small offline task and show what it skips", description=demo.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=_DEFAULTS.task, choices=sorted(DEMOS), help="image classification, video or seg")
    p.add_argument("--subset", default=None,
                   help="the data set's task: " + "; ".join(f"{k}: {', '.join(v.subsets)} (default {v.subsets[0]})"
                                                            for k, v in DEMOS.items() if v.subsets))
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default " + ", ".join(f"{k}: {v.epochs}" for k, v in DEMOS.items()) + ")")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 1e-2, the suites' choice on the AdaptFormer baseline)")
    p.add_argument("--target-rate", type=float, default=_DEFAULTS.target_rate)
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    p.add_argument("--data-root", type=Path, default=None,
                   help="data set folder (default " + ", ".join(f"{k}: {v.default_root}" for k, v in DEMOS.items())
                        + ")")
    p.add_argument("--out", type=Path, default=_DEFAULTS.out)
    p.add_argument("--train-images", type=int, default=None,
                   help="training samples, plus a quarter for validation where the data set has one (default: the "
                        "benchmark's, 800 images or clips, 1,000 for segmentation)")
    p.add_argument("--test-images", type=int, default=None,
                   help="test samples (default: the benchmark's, 1,000, 500 for segmentation)")
    p.add_argument("--speed-batch", type=int, default=_DEFAULTS.speed_batch)
    p.add_argument("--repeats", type=int, default=_DEFAULTS.repeats, help="timed rounds of the speed measurement")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(run=run)


def demo_options(args: argparse.Namespace) -> DemoOptions:
    """The demo that `dytune demo`'s parsed flags describe."""
    return DemoOptions(**{f.name: getattr(args, f.name) for f in fields(DemoOptions)})


def run(args: argparse.Namespace) -> int:
    return demo.run_demo(demo_options(args))
