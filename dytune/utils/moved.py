"""Old import paths of modules that moved, kept importable with a DeprecationWarning that names the new home.

`MOVED` is the one table of moves (old dotted name -> new); a module under a moved package moves with it.
`install()` puts the finder first on `sys.meta_path`, once; the package root calls it.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Dict, Optional, Sequence

__all__ = ["MOVED", "install", "new_name"]

MOVED: Dict[str, str] = {
    "dytune.modules.video": "dytune.tasks.video.model",
    "dytune.modules": "dytune.core.modules",
    "dytune.tome": "dytune.core.tome",
    "dytune.config": "dytune.core.config",
    "dytune.flops": "dytune.core.flops",
    "dytune.capacity": "dytune.core.capacity",
    "dytune.checkpoint": "dytune.core.checkpoint",
    "dytune.loss": "dytune.core.loss",
    "dytune.settings": "dytune.utils.settings",
    "dytune.runtime": "dytune.utils.runtime",
    "dytune.distributed": "dytune.utils.distributed",
    "dytune.errors": "dytune.utils.errors",
    "dytune.utils.argtypes": "dytune.cli.argtypes",
    "dytune.baselines": "dytune.methods",
}
# dytune.convert and dytune.calibrate moved to dytune.core too, but are not aliased: the package root binds those
# names to the functions of the same name, which importing a module under that name would replace.


def new_name(name: str) -> Optional[str]:
    """The new dotted name of the old module `name` (the longest moved prefix decides), or None if it did not move."""
    for old in sorted(MOVED, key=len, reverse=True):
        if name == old or name.startswith(old + "."):
            return MOVED[old] + name[len(old):]
    return None


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new home (the same module object, so state is shared)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.target}; import it from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the module at its new home is already executed


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        new = new_name(name)
        return None if new is None else importlib.util.spec_from_loader(name, _Alias(new))


def install() -> None:
    """Make the old paths of `MOVED` importable (idempotent). The finder goes first: below an old package name, which
    is the new package, the path finder would otherwise load a second copy of each sub-module."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
