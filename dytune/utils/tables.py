"""The one writer of result tables in Markdown (suites, recipe selection, VTAB-1K, the benchmarks' scripts)."""
from __future__ import annotations

from typing import Any, Iterable, List, Sequence

__all__ = ["markdown_table"]


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: `| a | b |`, then `|---|---|`, then one line per row.

    Args:
        header: The column titles.
        rows: The cells of each row, already formatted (anything else is written with `str`); each row has as many
            cells as `header`.
    """
    lines: List[str] = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"markdown_table: row {i} has {len(row)} cells, the header {len(header)} "
                             f"({', '.join(map(str, header))})")
        lines.append("| " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines)
