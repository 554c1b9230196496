"""Markdown table of `dytune bench` JSON files (for docs/speed.md).

    python benchmarks/results_table.py docs/results/bench_*.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dytune.utils.tables import markdown_table

HEADER = ("method", "precision", "batch", "GMACs/img", "keep", "ms/batch (median ± half-range)", "img/s",
          "speed-up vs dense", "FLOPs-ideal", "peak MB", "max logit diff vs reference")


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    rows = []
    for path in sys.argv[1:]:
        result = json.loads(Path(path).read_text())
        for r in result["rows"]:
            rows.append([r["method"], r["precision"], r["batch"], f"{r['gmacs']:.2f}", fmt(r.get("keep_rate"), ".3f"),
                         f"{r['median_ms']:.1f} ± {r['spread_ms']:.1f}", f"{r['images_per_s']:.2f}",
                         fmt(r.get("speedup"), ".3f"), fmt(r.get("flops_ideal_speedup"), ".3f"),
                         f"{r['peak_memory_mb']:.1f}", fmt(r.get("max_abs_diff_vs_reference"), ".1e")])
    print(markdown_table(HEADER, rows))


if __name__ == "__main__":
    main()
