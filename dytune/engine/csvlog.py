"""The CSV training log of `dytune train` (a row per epoch) and `dytune pretrain` (a row per logged step)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List

from ..utils.io import atomic_write

__all__ = ["CsvLog"]


class CsvLog:
    """A CSV file of rows keyed by a growing number (epoch, step), rewritten atomically on every append.

    A resumed run redoes what came after its checkpoint, so appending a row first drops the rows whose key is not
    below the new one's; the log never holds a row twice. Columns are the union of all rows' keys, first seen first.

    Args:
        path: The CSV file (created on the first append).
        key: The column that orders the rows.
    """

    def __init__(self, path: Path, key: str) -> None:
        self.path = Path(path)
        self.key = key

    def rows(self) -> List[Dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def append(self, row: Dict[str, Any]) -> None:
        rows = [r for r in self.rows() if float(r[self.key]) < float(row[self.key])]
        fields = list(dict.fromkeys([*(rows[0].keys() if rows else []), *row]))

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows([*rows, row])

        atomic_write(self.path, write)
