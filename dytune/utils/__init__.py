"""Helpers with no knowledge of models, tasks or runs: atomic file writes and JSON reading (`io`), typed settings
dataclasses (`settings`), precision and timing checks (`runtime`), torchrun helpers (`distributed`), the errors the
command line reports (`errors`), Markdown tables (`tables`) and the old paths of moved modules (`moved`)."""
from .io import atomic_write

__all__ = ["atomic_write"]
