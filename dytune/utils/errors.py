"""Errors that are the user's to fix: the `dytune` command prints them as one line instead of a traceback."""
from __future__ import annotations

from typing import Tuple, Type

__all__ = ["RunError", "USER_ERRORS"]


class RunError(RuntimeError):
    """A run folder cannot be used as asked: held by another process, holding another run, or a checkpoint that
    fails verification. The message names the folder and what to do."""


# What `dytune.cli.main` reports as `dytune: error: <message>` (exit code 2); anything else keeps its traceback.
# dytune raises ValueError for bad settings, list lines and checkpoints, FileNotFoundError for missing files.
USER_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, RunError)
