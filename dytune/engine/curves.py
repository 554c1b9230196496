"""Training curves of a suite's recipe search: whether each run has converged at the point it chose.

Every search run logs the training loss and, with `eval_every: 1`, the validation metric per epoch (`log.csv`).
For each searching run's chosen point this module averages those curves over the selection seeds, measures how much
the validation metric still moved in the last third of training, and writes the numbers (`curves.md`) and the
curves (`curves.png`) beside the selection.
"""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ..utils.io import atomic_write
from ..utils.tables import markdown_table

__all__ = ["Curve", "read_curve", "mean_curve", "late_gain", "load_curves", "mean_late_gains", "convergence_rows",
           "convergence_markdown", "plot_curves", "write_curves"]


class Curve(NamedTuple):
    """One run's per-epoch log: epochs, training loss, and the validation metric (None where not evaluated)."""

    epochs: List[int]
    train_loss: List[float]
    metric: List[Optional[float]]


def _number(text: Optional[str]) -> Optional[float]:
    return float(text) if text not in (None, "") else None


def read_curve(log: Path, metric: str) -> Curve:
    """The curve in a run's `log.csv`.

    Args:
        log: The run's log.csv.
        metric: The task's primary metric; its column is `eval_<metric>`.
    """
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "train_loss" not in rows[0]:
        raise ValueError(f"{log}: expected a training log with epoch and train_loss columns")
    return Curve([int(r["epoch"]) for r in rows], [float(r["train_loss"]) for r in rows],
                 [_number(r.get(f"eval_{metric}")) for r in rows])


def mean_curve(curves: Sequence[Curve]) -> Curve:
    """The per-epoch mean of curves over the epochs they all have (e.g. the seeds of one run)."""
    if not curves:
        raise ValueError("mean_curve: no curves")
    epochs = sorted(set.intersection(*(set(c.epochs) for c in curves)))
    at = [dict(zip(c.epochs, zip(c.train_loss, c.metric))) for c in curves]

    def mean(values: List[Optional[float]]) -> Optional[float]:
        return None if any(v is None for v in values) else statistics.mean(values)

    return Curve(epochs, [statistics.mean(a[e][0] for a in at) for e in epochs],
                 [mean([a[e][1] for a in at]) for e in epochs])


def late_gain(curve: Curve, window: int = 3) -> Optional[float]:
    """How much the validation metric still moved in the last third of training: the mean of its last `window`
    evaluations minus the mean of the `window` evaluations that end two thirds of the way through. None with fewer
    than 2 x `window` evaluations."""
    points = [(e, m) for e, m in zip(curve.epochs, curve.metric) if m is not None]
    if len(points) < 2 * window:
        return None
    cut = max((i for i, (e, _) in enumerate(points) if e <= math.ceil(2 * points[-1][0] / 3)), default=0)
    cut = min(max(cut, window - 1), len(points) - window - 1)
    before = [m for _, m in points[cut - window + 1:cut + 1]]
    return statistics.mean(m for _, m in points[-window:]) - statistics.mean(before)


def convergence_rows(curves: Mapping[Tuple[str, str], Curve], points: Mapping[str, str]) -> List[Dict[str, object]]:
    """One row per (run, task): the chosen point, epochs, last and best validation metric, the epoch of the best,
    the late gain, and the training loss at the last epoch.

    Args:
        curves: (run, task) -> the run's curve at its chosen point (mean over seeds).
        points: Run -> the name of its chosen point.
    """
    rows = []
    for (run, task), c in curves.items():
        scored = [(m, e) for e, m in zip(c.epochs, c.metric) if m is not None]
        best = max(scored, key=lambda s: s[0]) if scored else (None, None)  # the first epoch at the best
        rows.append({"run": run, "point": points[run], "task": task, "epochs": c.epochs[-1],
                     "last": scored[-1][0] if scored else None, "best": best[0], "best_epoch": best[1],
                     "late_gain": late_gain(c), "final_train_loss": c.train_loss[-1]})
    return rows


def convergence_markdown(rows: Sequence[Mapping[str, object]], metric: str) -> str:
    """The convergence table, with what its columns mean."""
    def cell(value: object, digits: int = 2) -> str:
        return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    table = markdown_table(
        ["run", "point", "task", "epochs", f"last {metric}", f"best {metric}", "best epoch", "late gain",
         "final train loss"],
        [[cell(r["run"]), cell(r["point"]), cell(r["task"]), cell(r["epochs"]), cell(r["last"]), cell(r["best"]),
          cell(r["best_epoch"]), cell(r["late_gain"]), cell(r["final_train_loss"], 3)] for r in rows])
    return (f"Convergence at the chosen points (validation {metric} per epoch of the search runs, mean over the "
            "selection seeds). Late gain: the mean of the last 3 evaluations minus the mean of the 3 that end two "
            "thirds of the way through; near zero means the run had flattened, clearly positive that it was still "
            "improving.\n\n" + table)


def plot_curves(curves: Mapping[Tuple[str, str], Curve], path: Path, metric: str) -> Path:
    """Validation metric (top row) and training loss (bottom row) per epoch, one column per task, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(task for _, task in curves))
    fig, axes = plt.subplots(2, len(tasks), figsize=(4 * len(tasks), 6.5), squeeze=False, sharex="col")
    for (run, task), c in curves.items():
        col = tasks.index(task)
        scored = [(e, m) for e, m in zip(c.epochs, c.metric) if m is not None]
        if scored:
            axes[0][col].plot(*zip(*scored), label=run, linewidth=1.2)
        axes[1][col].plot(c.epochs, c.train_loss, label=run, linewidth=1.2)
    for col, task in enumerate(tasks):
        axes[0][col].set_title(task)
        axes[0][col].set_ylabel(f"validation {metric}")
        axes[1][col].set_ylabel("training loss")
        axes[1][col].set_xlabel("epoch")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def load_curves(logs: Mapping[Tuple[str, str], Sequence[Path]], metric: str) -> Dict[Tuple[str, str], Curve]:
    """(run, task) -> the mean curve over the log.csv files given for it (e.g. its selection seeds); keys whose
    files are all missing are left out."""
    curves = {}
    for key, files in logs.items():
        found = [read_curve(log, metric) for log in files if log.is_file()]
        if found:
            curves[key] = mean_curve(found)
    return curves


def mean_late_gains(curves: Mapping[Tuple[str, str], Curve], tasks: Sequence[str]) -> Dict[str, Optional[float]]:
    """Run -> its late gain averaged over `tasks`; None where a task's curve is missing or too short."""
    gains: Dict[str, Optional[float]] = {}
    for run in dict.fromkeys(run for run, _ in curves):
        per_task = [late_gain(curves[(run, t)]) if (run, t) in curves else None for t in tasks]
        gains[run] = None if any(g is None for g in per_task) else statistics.mean(per_task)
    return gains


def write_curves(curves: Mapping[Tuple[str, str], Curve], points: Mapping[str, str], metric: str,
                 out: Path) -> List[Path]:
    """Write `curves.md` and `curves.png` into `out`.

    Args:
        curves: (run, task) -> the run's curve at its chosen point (`load_curves`).
        points: Run -> the name of its chosen point.
        metric: The primary metric.
        out: The suite's output folder.

    Returns:
        The files written; none when no curve has a validation metric at two epochs or more.
    """
    if not any(sum(m is not None for m in c.metric) > 1 for c in curves.values()):
        return []
    text = convergence_markdown(convergence_rows(curves, points), metric)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "curves.md", lambda tmp: Path(tmp).write_text(text + "\n"))
    return [out / "curves.md", plot_curves(curves, out / "curves.png", metric)]
