"""The `dytune` command: one sub-command per module, each exposing `add_parser(subparsers)` and `run(args)`."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# sub-command name -> module implementing it
COMMANDS = {
    "demo": "dytune.demo",
    "train": "dytune.engine.cli",
    "eval": "dytune.engine.cli",
    "vtab": "dytune.engine.cli",
    "vtab-summary": "dytune.engine.cli",
    "suite": "dytune.engine.suite",
    "bench": "dytune.bench.cli",
    "minivtab": "dytune.data.minivtab",
    "pretrain": "dytune.pretrain",
}


def keep_rates_arg(text: str) -> List[float]:
    """argparse type of a comma list of keep rates in [0, 1] (`--budgets` of `dytune eval` and `dytune bench`)."""
    try:
        rates = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated keep rates, e.g. 0.3,0.5,0.7") from None
    if not rates or not all(0.0 <= r <= 1.0 for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: expected keep rates in [0, 1]")
    return rates


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dytune", description="Dynamic Tuning (DyT) of timm Vision Transformers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub, name)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
