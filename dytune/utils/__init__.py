"""Helpers with no knowledge of models, tasks or runs: atomic file writes (more to come from the reorganisation)."""
from .io import atomic_write

__all__ = ["atomic_write"]
