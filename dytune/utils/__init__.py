"""Helpers with no knowledge of models, tasks or runs: atomic file writes, typed settings dataclasses, precision and
timing checks, torchrun helpers, the errors the command line reports, argument types, the table of moved modules."""
from .io import atomic_write

__all__ = ["atomic_write"]
