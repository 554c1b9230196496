"""The `dytune` command: one sub-command per module, each exposing `add_parser(subparsers)` and `run(args)`.

dytune's own errors (a bad setting, a missing file, a bad list line or checkpoint, a run folder in use) end the
command with one line `dytune: error: <message>` and exit code 2; `--debug` shows their traceback. Anything else
keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

from ..utils.errors import USER_ERRORS

# sub-command name -> module implementing it
COMMANDS = {
    "demo": "dytune.cli.demo",
    "train": "dytune.cli.train",
    "eval": "dytune.cli.train",
    "vtab": "dytune.cli.train",
    "vtab-summary": "dytune.cli.train",
    "suite": "dytune.cli.suite",
    "bench": "dytune.cli.bench",
    "minivtab": "dytune.cli.mini",
    "minivideo": "dytune.cli.mini",
    "miniseg": "dytune.cli.mini",
    "predict": "dytune.cli.predict",
    "export": "dytune.cli.export",
    "pretrain": "dytune.cli.mini",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dytune", description="Dynamic Tuning (DyT) of timm Vision Transformers.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of dytune's own errors too (also "
                        "accepted after the command, or as DYTUNE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub, name)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the `dytune` command line `argv` (default: sys.argv[1:]); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is taken wherever it stands (`dytune --debug train ...` or `dytune train ... --debug`)
    debug = "--debug" in argv or os.environ.get("DYTUNE_DEBUG", "") not in ("", "0")
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"dytune: error: {error_message(e)}", file=sys.stderr, flush=True)
        return 2


def error_message(error: BaseException) -> str:
    """The text of a user error as one message (an OSError's own text names its file)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
