"""Recipe selection for a suite: every run searches a grid of settings on validation data and keeps its best point.

`grid:` maps TrainConfig settings to a list of values (an axis) or one value (fixed for every point);
`warmup_fraction: f` sets warmup_epochs = f x epochs. `select:` holds the settings that turn the suite's final
train/test split into train/validation (e.g. `train_split`, `eval_split`, per task under `task_settings`), the
selection `tasks` (default: all) and `seeds` (default: the suite's). A run chooses the point with the best mean
primary metric over the selection tasks and seeds (higher or lower as the task's metric says); ties go to fewer
epochs, then the lower lr, then the earlier point of the grid. A run with `select_as: <run>` reuses that run's choice.

`select.lengthen: {late_gain_above: g, max_epochs: m}` trains longer where the grid stopped too early: when a run
chooses its longest point and that point's validation curves still rose (mean late gain over the selection tasks
above g points, `dytune.engine.curves.late_gain`), the point with twice the epochs (the same other values) is
searched too and competes by the same rule, up to m epochs.
"""
from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..run_config import TrainConfig
from ..utils.tables import markdown_table

__all__ = ["check_selection", "grid_points", "run_points", "point_name", "point_settings", "target", "choose",
           "to_lengthen", "selection_markdown"]

DERIVED = ("warmup_fraction",)  # grid keys that are not TrainConfig settings
PLANNED = ("task", "seed", "output_dir")  # settings the suite sets per run, never searched
SELECT_KEYS = ("tasks", "seeds", "task_settings", "lengthen")
LENGTHEN_KEYS = ("late_gain_above", "max_epochs")


def _settings() -> set:
    return set(TrainConfig.setting_names())


def _check_grid(path: Path, grid: Any) -> None:
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"{path}: grid must map settings to a list of values (an axis) or one value, got {grid!r}")
    unknown = sorted(set(grid) - _settings() - set(DERIVED))
    if unknown:
        raise ValueError(f"{path}: grid key(s) {unknown} are not settings (see `dytune train --help-config`) nor "
                         f"{list(DERIVED)}")
    planned = sorted(set(grid) & set(PLANNED))
    if planned:
        raise ValueError(f"{path}: grid key(s) {planned}: the suite sets these per run; they cannot be searched")
    for key, values in grid.items():
        if isinstance(values, list) and (not values or len({repr(v) for v in values}) != len(values)):
            raise ValueError(f"{path}: grid.{key}={values!r}; an axis needs distinct values")
    fraction = grid.get("warmup_fraction")
    if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                 or not 0 <= fraction < 1):
        raise ValueError(f"{path}: grid.warmup_fraction={fraction!r}; expected one number in [0, 1)")
    if fraction is not None and "warmup_epochs" in grid:
        raise ValueError(f"{path}: grid sets both warmup_fraction and warmup_epochs; keep one")


def _check_select(path: Path, suite: Mapping[str, Any]) -> None:
    select = suite["select"]
    if not isinstance(select, dict):
        raise ValueError(f"{path}: select must be a mapping (train_split, eval_split, tasks, seeds, ...), "
                         f"got {select!r}")
    unknown = sorted(set(select) - _settings() - set(SELECT_KEYS))
    if unknown:
        raise ValueError(f"{path}: select key(s) {unknown} are neither settings nor {list(SELECT_KEYS)}")
    tasks = select.get("tasks", suite["tasks"])
    if not isinstance(tasks, list) or not tasks or set(tasks) - set(suite["tasks"]):
        raise ValueError(f"{path}: select.tasks={tasks!r}; expected a non-empty list of the suite's tasks "
                         f"{suite['tasks']}")
    seeds = select.get("seeds", suite["seeds"])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise ValueError(f"{path}: select.seeds={seeds!r}; expected a non-empty list of integers")
    per_task = select.get("task_settings") or {}
    if not isinstance(per_task, dict) or set(per_task) - set(suite["tasks"]):
        raise ValueError(f"{path}: select.task_settings must map tasks of the suite {suite['tasks']} to settings, "
                         f"got {per_task!r}")
    for task in tasks:
        final = {**suite["base"], **(suite.get("task_settings") or {}).get(task, {})}
        search = {**final, **select, **per_task.get(task, {})}
        if search.get("eval_split", "test") == final.get("eval_split", "test"):
            raise ValueError(f"{path}: select leaves task {task} evaluated on its final split "
                             f"{final.get('eval_split', 'test')!r}; set select.eval_split (or "
                             f"select.task_settings.{task}.eval_split) to a validation split")


def _check_lengthen(path: Path, suite: Mapping[str, Any]) -> None:
    rule = suite["select"].get("lengthen")
    if rule is None:
        return
    if not isinstance(rule, dict) or sorted(rule) != sorted(LENGTHEN_KEYS):
        raise ValueError(f"{path}: select.lengthen={rule!r}; expected a mapping with exactly {list(LENGTHEN_KEYS)}")
    epochs = suite["grid"].get("epochs")
    if not isinstance(epochs, list) or not all(type(e) is int and e > 0 for e in epochs):
        raise ValueError(f"{path}: select.lengthen needs grid.epochs to be an axis of whole epochs, got {epochs!r}")
    gain, most = rule["late_gain_above"], rule["max_epochs"]
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or gain < 0:
        raise ValueError(f"{path}: select.lengthen.late_gain_above={gain!r}; expected a number >= 0 (metric points)")
    if type(most) is not int or most < 2 * max(epochs):
        raise ValueError(f"{path}: select.lengthen.max_epochs={most!r}; expected an integer >= {2 * max(epochs)} "
                         f"(twice the grid's longest point), else nothing is ever lengthened")
    every = suite["select"].get("eval_every", suite["base"].get("eval_every", TrainConfig.eval_every))
    if type(every) is not int or every * 6 > max(epochs):
        raise ValueError(f"{path}: select.lengthen reads validation curves: set select.eval_every so that the "
                         f"longest search runs evaluate at least 6 times (at most {max(epochs) // 6} for grid.epochs "
                         f"{epochs}), got {every!r}")


def _check_runs(path: Path, suite: Mapping[str, Any]) -> None:
    names = [r["name"] for r in suite["runs"]]
    grid = suite.get("grid") or {}
    owned = set(grid) | ({"warmup_epochs"} if "warmup_fraction" in grid else set())
    for run in suite["runs"]:
        clash = sorted(set(run) & owned)
        if clash:
            raise ValueError(f"{path}: run {run['name']} sets {clash}, which grid sets; remove them from the run or "
                             f"from grid")
        other = run.get("select_as")
        if other is None:
            continue
        if not grid:
            raise ValueError(f"{path}: run {run['name']} has select_as but the suite has no grid")
        if other not in names or other == run["name"]:
            raise ValueError(f"{path}: run {run['name']}: select_as={other!r}; expected another run of the suite "
                             f"({', '.join(names)})")
        if "select_as" in next(r for r in suite["runs"] if r["name"] == other):
            raise ValueError(f"{path}: run {run['name']}: select_as={other!r} names a run that itself has "
                             f"select_as; name the run that searches")


def check_selection(path: Path, suite: Mapping[str, Any]) -> None:
    """Refuse a malformed `grid`, `select` or `select_as`, naming the suite file and the key.

    Args:
        path: The suite file (for messages).
        suite: The loaded suite.
    """
    if ("grid" in suite) != ("select" in suite):
        raise ValueError(f"{path}: grid and select go together: grid says what is searched, select on which "
                         f"(validation) data")
    if "grid" in suite:
        _check_grid(path, suite["grid"])
        _check_select(path, suite)
        _check_lengthen(path, suite)
    _check_runs(path, suite)


def grid_points(grid: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Every combination of the grid's axes (its list values), in grid order, the first axis slowest."""
    axes = {k: v for k, v in grid.items() if isinstance(v, list)}
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def run_points(grid: Mapping[str, Any], extra: Optional[Mapping[str, Sequence[Dict[str, Any]]]], run: str,
               ) -> List[Dict[str, Any]]:
    """The points a run searches: the grid's, then the lengthened ones added for it (`extra`), in that order."""
    return grid_points(grid) + list((extra or {}).get(run, ()))


def point_name(point: Mapping[str, Any]) -> str:
    """A folder name for a grid point, e.g. `lr0.003-epochs15`."""
    return "-".join(f"{k}{v}" for k, v in point.items()).replace("/", "_").replace(" ", "")


def point_settings(grid: Mapping[str, Any], point: Mapping[str, Any]) -> Dict[str, Any]:
    """The settings of one point: the grid's fixed values and the point's axis values (`warmup_fraction` kept)."""
    return {**{k: v for k, v in grid.items() if not isinstance(v, list)}, **point}


def target(run: Mapping[str, Any]) -> str:
    """The run whose search decides `run`'s point: its `select_as`, else itself."""
    return run.get("select_as", run["name"])


def _rank(point: Mapping[str, Any], index: int) -> Tuple[float, float, int]:
    def number(key: str) -> float:
        value = point.get(key, 0)
        return float(value) if isinstance(value, (int, float)) else 0.0

    return number("epochs"), number("lr"), index


def best_point(means: Sequence[float], points: Sequence[Mapping[str, Any]], greater_is_better: bool) -> int:
    """The index of the best mean; ties (to 1e-9) go to fewer epochs, then the lower lr, then the earlier point."""
    sign = 1.0 if greater_is_better else -1.0
    top = max(sign * m for m in means)
    tied = [i for i, m in enumerate(means) if math.isclose(sign * m, top, rel_tol=1e-9, abs_tol=1e-9)]
    return min(tied, key=lambda i: _rank(points[i], i))


def _point_row(run: str, point: Mapping[str, Any], tasks: Sequence[str], seeds: Sequence[int],
               found: Mapping[Tuple[str, str, int], float]) -> Dict[str, Any]:
    key = f"{run}/{point_name(point)}"
    per_task = {t: (statistics.mean(found[(key, t, s)] for s in seeds)
                    if all((key, t, s) in found for s in seeds) else None) for t in tasks}
    done = [v for v in per_task.values() if v is not None]
    mean = statistics.mean(done) if len(done) == len(tasks) else None
    return {"run": run, "point": point_name(point), **point, **per_task, "mean": mean, "chosen": 0}


def choose(rows: Sequence[Mapping[str, Any]], grid: Mapping[str, Any], tasks: Sequence[str], seeds: Sequence[int],
           greater_is_better: Mapping[str, bool], extra: Optional[Mapping[str, Sequence[Dict[str, Any]]]] = None,
           ) -> Tuple[List[Dict[str, Any]], Dict[str, Dict[str, Any]]]:
    """Score every searching run's points and choose one per run whose points are all finished.

    Args:
        rows: Search results as `collect` gives them, `run` named `<run>/<point name>`, `acc` the primary metric.
        grid: The suite's grid.
        tasks, seeds: The selection tasks and seeds.
        greater_is_better: Per searching run, which way its primary metric improves.
        extra: Per run, lengthened points searched beyond the grid (`to_lengthen`).

    Returns:
        (one table row per run and point: axis values, mean per task over seeds, mean over tasks, chosen 0/1;
        run -> chosen point's axis values).
    """
    found = {(r["run"], r["task"], r["seed"]): r["acc"] for r in rows}
    table, choices = [], {}
    for run, greater in greater_is_better.items():
        points = run_points(grid, extra, run)
        scored = [_point_row(run, p, tasks, seeds, found) for p in points]
        table += scored
        if all(r["mean"] is not None for r in scored):
            best = best_point([r["mean"] for r in scored], points, greater)
            scored[best]["chosen"] = 1
            choices[run] = points[best]
    return table, choices


def to_lengthen(chosen: Mapping[str, Mapping[str, Any]], grid: Mapping[str, Any],
                extra: Optional[Mapping[str, Sequence[Dict[str, Any]]]], gains: Mapping[str, Optional[float]],
                rule: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The point each run should search next under `select.lengthen`: twice the epochs of its choice, where the
    choice is its longest point so far and its mean late gain is above `rule["late_gain_above"]`.

    Args:
        chosen: Run -> chosen point (`choose`).
        grid, extra: The points searched so far (`run_points`).
        gains: Run -> mean late gain of its chosen point over the selection tasks (None: not measurable).
        rule: `select.lengthen`.
    """
    longer = {}
    for run, point in chosen.items():
        points = run_points(grid, extra, run)
        gain = gains.get(run)
        if point["epochs"] < max(p["epochs"] for p in points) or gain is None or gain <= rule["late_gain_above"]:
            continue
        candidate = {**point, "epochs": 2 * point["epochs"]}
        if candidate["epochs"] <= rule["max_epochs"] and candidate not in points:
            longer[run] = candidate
    return longer


def selection_markdown(table: Sequence[Mapping[str, Any]], grid: Mapping[str, Any], tasks: Sequence[str],
                       seeds: Sequence[int], metric: str, greater_is_better: bool,
                       shared: Mapping[str, str], lengthen: Optional[Mapping[str, Any]] = None,
                       gains: Optional[Mapping[str, Optional[float]]] = None) -> str:
    """The search as a readable table: one row per run and point, the chosen point in bold, then the lengthening
    rule with each run's late gain, then who shares whose."""
    axes = [k for k, v in grid.items() if isinstance(v, list)]
    fixed = ", ".join(f"{k}={v}" for k, v in grid.items() if not isinstance(v, list))
    lines = [f"Recipe selection: validation {metric} ({'higher' if greater_is_better else 'lower'} is better), mean "
             f"over tasks {', '.join(tasks)} and seeds {', '.join(map(str, seeds))}; ties go to fewer epochs, then "
             f"the lower lr." + (f" Fixed: {fixed}." if fixed else ""), ""]
    rows = []
    for r in table:
        cells = [r["run"]] + [str(r[k]) for k in axes] + [f"{r[t]:.2f}" if r[t] is not None else "" for t in tasks]
        cells += [f"{r['mean']:.2f}" if r["mean"] is not None else "incomplete", "**yes**" if r["chosen"] else ""]
        rows.append(cells)
    lines.append(markdown_table(["run", *axes, *tasks, "mean", "chosen"], rows))
    if lengthen:
        measured = ", ".join(f"{run} {gain:+.2f}" if gain is not None else f"{run} -"
                             for run, gain in (gains or {}).items())
        lines += ["", f"Lengthened (select.lengthen): a run whose choice is its longest point and whose validation "
                      f"curves at that point still rose by more than {lengthen['late_gain_above']} (mean late gain "
                      f"over the selection tasks) also searches twice the epochs, up to {lengthen['max_epochs']}. "
                      f"Late gain at the chosen points: {measured}."]
    if shared:
        uses = ", ".join(f"{run} uses {other}'s" for run, other in shared.items())
        lines += ["", f"Shared choices (select_as): {uses}."]
    return "\n".join(lines)
