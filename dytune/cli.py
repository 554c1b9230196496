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
