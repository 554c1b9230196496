"""A suite's report: the summary per run (mean over tasks and seeds), its markdown table, the keep rate per layer and
the plots, written next to the results CSV."""
from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..utils.io import atomic_write
from ..utils.tables import markdown_table
from .results import write_csv

__all__ = ["summarise", "labels", "markdown", "layer_keep_rates", "keep_rate_markdown", "plot_keep_rates", "plot",
           "write_report"]


def summarise(rows: List[Dict[str, Any]], tasks: List[str]) -> List[Dict[str, Any]]:
    """Per run: mean accuracy per task over seeds, and mean +- std over seeds of the task-averaged accuracy."""
    out = []
    for name in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == name]
        seeds = sorted({r["seed"] for r in mine})
        per_task = {t: statistics.mean(r["acc"] for r in mine if r["task"] == t)
                    for t in tasks if any(r["task"] == t for r in mine)}
        complete = [s for s in seeds if all(any(r["seed"] == s and r["task"] == t for r in mine) for t in tasks)]
        means = [statistics.mean(r["acc"] for r in mine if r["seed"] == s) for s in complete]
        out.append({"run": name, "per_task": per_task, "seeds": len(complete),
                    "mean": statistics.mean(means) if means else None,
                    "std": statistics.stdev(means) if len(means) > 1 else 0.0,
                    "gmacs": statistics.mean(r["gmacs"] for r in mine),
                    "gmacs_pct_dense": statistics.mean(r["gmacs_pct_dense"] or 100.0 for r in mine),
                    "images_per_s": statistics.mean(r["images_per_s"] for r in mine),
                    "keep_rate": statistics.mean(r["keep_rate"] for r in mine),
                    "trainable_params": statistics.mean(r["trainable_params"] for r in mine)})
    return out


def labels(rows: List[Dict[str, Any]]) -> Tuple[str, str]:
    """(metric name, sample unit) of the rows, e.g. ("miou", "img"); generic words where rows differ or lack them."""
    metrics = {r.get("metric") for r in rows} - {None, ""}
    units = {r.get("unit") for r in rows} - {None, ""}
    return (metrics.pop() if len(metrics) == 1 else "metric"), (units.pop() if len(units) == 1 else "sample")


def markdown(summary: List[Dict[str, Any]], tasks: List[str], unit: str = "img") -> str:
    header = ["run", *tasks, "mean ± std (seeds)", "keep rate", "GMACs (% dense)", f"{unit}/s", "trainable params"]
    rows = []
    for s in summary:
        mean = f"{s['mean']:.2f} ± {s['std']:.2f} ({s['seeds']})" if s["mean"] is not None else "incomplete"
        rows.append([s["run"], *(f"{s['per_task'][t]:.1f}" if t in s["per_task"] else "" for t in tasks), mean,
                     f"{s['keep_rate']:.2f}", f"{s['gmacs']:.4f} ({s['gmacs_pct_dense']:.0f} %)",
                     f"{s['images_per_s']:.0f}", f"{s['trainable_params']:,.0f}"])
    return markdown_table(header, rows)


def layer_keep_rates(rows: List[Dict[str, Any]], key: str) -> Dict[str, List[float]]:
    """Mean keep rate per layer, grouped by `key` ("run" or "task"), over the rows of dynamic models."""
    groups: Dict[str, List[List[float]]] = {}
    for r in rows:
        if r["keep_rates"]:
            groups.setdefault(r[key], []).append(r["keep_rates"])
    return {name: [statistics.mean(layer) for layer in zip(*rates)] for name, rates in groups.items()}


def keep_rate_markdown(per_run: Dict[str, List[float]]) -> str:
    """Table of the mean keep rate per layer of every dynamic run (empty cells past a shallower run's last layer)."""
    depth = max(len(v) for v in per_run.values())
    return markdown_table(["run", *(f"layer {i}" for i in range(depth))],
                          [[name, *(f"{v:.2f}" for v in rates), *[""] * (depth - len(rates))]
                           for name, rates in per_run.items()])


def plot_keep_rates(rows: List[Dict[str, Any]], path: Path) -> Path:
    """Heat maps of the keep rate per layer: every dynamic run (mean over tasks), and per task for the first one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_run = layer_keep_rates(rows, "run")
    first = next(iter(per_run))
    panels = (("every dynamic run (mean over tasks and seeds)", per_run),
              (f"{first}, per task", layer_keep_rates([r for r in rows if r["run"] == first], "task")))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * max(len(per_run), 7) + 1.5))
    for ax, (title, table) in zip(axes, panels):
        values = list(table.values())
        image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(np.array(values)):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
        ax.set_yticks(range(len(table)), list(table))
        ax.set_xticks(range(len(values[0])))
        ax.set_xlabel("layer")
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=axes, label="keep rate (share of tokens computed)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def label_offsets(points: Sequence[Tuple[float, float]], widths: Sequence[float], height: float = 10.0,
                  step: float = 10.0) -> List[Tuple[float, float]]:
    """Offsets (in points) that keep the labels of nearby points from overlapping.

    Each label starts up and to the right of its point; where its box meets a box already placed, it tries one step
    below, one above, two below, and so on.

    Args:
        points: the points' positions in points (1/72 inch), in plotting order.
        widths: each label's width, in points.
        height: a label's height, in points.
        step: how far apart the tried positions are.
    """
    placed: List[Tuple[float, float, float]] = []
    offsets = []
    for (x, y), width in zip(points, widths):
        for k in itertools.count():
            dy = 4.0 + step * ((k + 1) // 2) * (-1 if k % 2 else 1)
            if not any(bx < x + 4.0 + width and x + 4.0 < bx + bw and abs(y + dy - by) < height
                       for bx, by, bw in placed):
                break
        placed.append((x + 4.0, y + dy, width))
        offsets.append((4.0, dy))
    return offsets


def plot(summary: List[Dict[str, Any]], path: Path, metric: str = "accuracy", unit: str = "img") -> Path:
    """The metric against GMACs and against measured samples/s, one point per run with its seed std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import Affine2D

    done = [s for s in summary if s["mean"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "gmacs", f"GMACs per {unit}"), (axes[1], "images_per_s", f"measured {unit}/s")):
        for s in done:
            ax.errorbar(s[key], s["mean"], yerr=s["std"], fmt="o", capsize=3)
        ax.autoscale_view()
        # Labels are placed in points, after autoscaling, so that "nearby" means nearby on the page.
        to_points = ax.transData + fig.dpi_scale_trans.inverted() + Affine2D().scale(72)
        where = [tuple(to_points.transform((s[key], s["mean"]))) for s in done]
        # About 0.6 of the font size per character.
        for s, offset in zip(done, label_offsets(where, [0.6 * 7 * len(s["run"]) for s in done])):
            ax.annotate(s["run"], (s[key], s["mean"]), textcoords="offset points", xytext=offset, fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel(f"mean {metric} over tasks (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(rows: List[Dict[str, Any]], tasks: List[str], out: Path) -> Tuple[str, List[Path]]:
    """Write the results CSV, the summary table, the accuracy-vs-cost plot and, with dynamic runs, the keep rates per
    layer (table and heat maps) into `out`.

    Args:
        rows: One row per finished run (`results.collect`).
        tasks: The suite's tasks, in table order.
        out: The suite's output folder.

    Returns:
        The tables as printed (summary, then the keep rates) and the files written.
    """
    write_csv(rows, out / "results.csv")
    summary = summarise(rows, tasks)
    metric, unit = labels(rows)
    table = markdown(summary, tasks, unit)
    atomic_write(out / "summary.md", lambda tmp: Path(tmp).write_text(table + "\n"))
    plot(summary, out / "accuracy_vs_cost.png", metric, unit)
    written = [out / "results.csv", out / "summary.md", out / "accuracy_vs_cost.png"]
    per_run = layer_keep_rates(rows, "run")
    if per_run:
        keep_table = keep_rate_markdown(per_run)
        atomic_write(out / "keep_rates.md", lambda tmp: Path(tmp).write_text(keep_table + "\n"))
        written += [out / "keep_rates.md", plot_keep_rates(rows, out / "keep_rates.png")]
        table += "\n\nKeep rate per layer\n\n" + keep_table
    return table, written
