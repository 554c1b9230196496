"""The `dytune` command line: `main` (sub-command dispatch and the one-line report of user errors) and the argparse
front ends of the sub-commands. Nothing in the package below imports it."""
from .main import COMMANDS, build_parser, error_message, main

__all__ = ["COMMANDS", "build_parser", "error_message", "main"]
