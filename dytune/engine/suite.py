"""A benchmark suite: several methods x tasks x seeds with one engine, one CSV, one table and one plot.

The suite file (YAML) holds `base` (the mapping of TrainConfig settings every run starts from; a preset's `base:`,
by contrast, names preset files), `tasks`, `seeds` and `runs` (a name and the settings that differ, optionally its
own `seeds`), and `output`; optionally `task_settings`, settings per task (e.g. each video task's dataset layout and
data_root), applied after `base` and before the run's. Finished
runs are skipped and interrupted ones resumed, so the same command continues a suite. A run also counts as finished
when the suite's results.csv holds its row, so run folders (checkpoints) may be deleted without losing results.
`train_plan` is the one multi-run loop: `dytune vtab` trains its tasks with it too. `--gpus N` trains each run in a
`dytune train` process of its own, N at a time, one GPU each; `--jobs K` runs K at a time instead (several small
runs per GPU, or side by side on CPU cores with `--gpus 0`).

Recipe selection: `grid` names the settings searched (a list is an axis, every combination a point, a single value
is fixed; `warmup_fraction: f` sets warmup_epochs = f x epochs) and `select` how a search run trains and is scored
(settings that make the final split train/validation, e.g. train_split and eval_split, per task under
`task_settings`; the selection `tasks` and `seeds`, by default the suite's). Every run first trains each point on
the selection tasks and seeds (`<output>/search/<run>/<point>/<task>/seed<k>`, remembered in
`<output>/search/results.csv`), keeps the point with the best mean primary metric (ties: fewer epochs, then the lower
lr; `<output>/selection.csv`, `selection.md`; the chosen points' training curves in `curves.md` and `curves.png`),
then trains with it on the suite's own split. `select.lengthen` also searches twice the epochs where a run chose
its longest point while its validation curves still rose (`dytune.engine.selection`). A run with
`select_as: <run>` reuses that run's choice. `--search-only` stops after the choice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..run_config import TrainConfig
from ..utils.errors import RunError
from ..utils.io import atomic_write
from . import orchestrator
from .orchestrator import train_plan  # noqa: F401  (its documented name: dytune.engine.suite.train_plan)
from .curves import Curve, load_curves, mean_late_gains, write_curves
from .report import labels, write_report
from .results import collect, read_csv, write_csv
from .selection import choose, point_name, selection_markdown, target, to_lengthen
from .suite_file import load_suite, planned_runs, planned_search, select

__all__ = ["train_suite", "run_suite", "run_selection", "train_plan"]


def run_suite(suite: Dict[str, Any], overrides: List[str] = (),
              choices: Optional[Dict[str, Dict[str, Any]]] = None, gpus: Optional[int] = None,
              jobs: Optional[int] = None) -> List[str]:
    """Train every planned run that has not finished.

    Args:
        suite: The loaded suite (possibly restricted by `select`).
        overrides: key=value settings for every run.
        choices: With a grid, run -> chosen point (`run_selection`); runs without one are not trained.
        gpus, jobs: Where runs train (`train_plan`): gpus None in this process, N in processes of their own, jobs
            of them at a time.

    Returns:
        The runs whose process failed (`train_plan`).
    """
    return orchestrator.train_plan(planned_runs(suite, overrides, choices), Path(suite["output"]) / "results.csv", gpus,
                                   jobs)


def _searching(suite: Dict[str, Any], runs: Sequence[Dict[str, Any]]) -> List[str]:
    """The runs whose search decides the points of `runs` (themselves or their `select_as`), in suite order."""
    wanted = {target(r) for r in runs}
    return [r["name"] for r in suite["runs"] if r["name"] in wanted]


def _greater_is_better(plan: List[Tuple[str, TrainConfig]]) -> Dict[str, bool]:
    """Per searching run (the part of `<run>/<point>` before the slash), which way its task's primary metric
    improves."""
    from ..tasks import build_task

    out: Dict[str, bool] = {}
    for name, cfg in plan:
        run = name.rsplit("/", 1)[0]
        if run not in out:
            out[run] = build_task(cfg).metric(1).greater_is_better
    return out


def _train_search(suite: Dict[str, Any], names: Sequence[str], overrides: List[str],
                  extra: Mapping[str, Sequence[Dict[str, Any]]], memory: Path, gpus: Optional[int],
                  jobs: Optional[int]) -> None:
    failed = orchestrator.train_plan(planned_search(suite, names, overrides, extra), memory, gpus, jobs)
    if failed:
        raise RunError(f"{suite['output']}: search run(s) {', '.join(failed)} failed; rerun the same command to "
                       f"resume them")


def _point_finished(suite: Dict[str, Any], run: str, point: Dict[str, Any], overrides: List[str],
                    extra: Mapping[str, Sequence[Dict[str, Any]]], memory: Path) -> bool:
    name = f"{run}/{point_name(point)}"
    plan = [(n, cfg) for n, cfg in planned_search(suite, [run], overrides, extra) if n == name]
    return len(collect(plan, read_csv(memory))) == len(plan)


def _chosen_curves(plan: List[Tuple[str, TrainConfig]], chosen: Mapping[str, Mapping[str, Any]],
                   tasks: Sequence[str], metric: str) -> Dict[Tuple[str, str], Curve]:
    """(run, task) -> the run's validation curve at its chosen point, the mean over the selection seeds."""
    names = {run: f"{run}/{point_name(point)}" for run, point in chosen.items()}
    logs = {(run, task): [Path(cfg.output_dir) / "log.csv" for name, cfg in plan
                          if name == names[run] and cfg.task == task] for run in names for task in tasks}
    return load_curves(logs, metric)


def run_selection(suite: Dict[str, Any], runs: Sequence[Dict[str, Any]], overrides: List[str] = (),
                  train: bool = True, gpus: Optional[int] = None,
                  jobs: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
    """Search the grid for `runs` (training what is missing when `train`), lengthen where `select.lengthen` says
    so, then score every searching run of the suite from what is on disk and write `selection.csv`, `selection.md`,
    `curves.md` and `curves.png`.

    Args:
        suite: The loaded suite, with `grid` and `select`.
        runs: The runs about to be trained (their `select_as` runs are searched for them).
        overrides: key=value settings for every run.
        train: Train the missing search runs; otherwise only report (lengthened points count once finished).
        gpus, jobs: Where search runs train (`train_plan`); a failed one stops the suite before any choice.

    Returns:
        Run name -> its chosen point (axis values), for every run of the suite whose choice is known.
    """
    out = Path(suite["output"])
    memory = out / "search" / "results.csv"
    rule, grid = suite["select"], suite["grid"]
    tasks, seeds = rule.get("tasks", suite["tasks"]), rule.get("seeds", suite["seeds"])
    wanted, everyone = _searching(suite, runs), _searching(suite, suite["runs"])
    extra: Dict[str, List[Dict[str, Any]]] = {}
    if train:
        _train_search(suite, wanted, overrides, extra, memory, gpus, jobs)
    while True:
        plan = planned_search(suite, everyone, overrides, extra)
        rows = collect(plan, read_csv(memory))
        if not rows:
            print("no search run finished yet")
            return {}
        greater = _greater_is_better(plan)
        table, chosen = choose(rows, grid, tasks, seeds, greater, extra)
        metric = labels(rows)[0]
        curves = _chosen_curves(plan, chosen, tasks, metric)
        # as improvement: a metric where lower is better improves when it falls
        gains = {run: g if g is None or greater[run] else -g for run, g in mean_late_gains(curves, tasks).items()}
        longer = to_lengthen(chosen, grid, extra, gains, rule["lengthen"]) if "lengthen" in rule else {}
        trial = {**extra, **{run: [*extra.get(run, []), point] for run, point in longer.items()}}
        missing = [run for run, point in longer.items()
                   if train and run in wanted and not _point_finished(suite, run, point, overrides, trial, memory)]
        for run in missing:
            print(f"{run}: its validation curves still rose at {point_name(chosen[run])} (late gain "
                  f"{gains[run]:+.2f}); searching {point_name(longer[run])}")
        if missing:  # in one plan, so that the lengthened points of several runs train side by side
            _train_search(suite, missing, overrides, trial, memory, gpus, jobs)
        grown = {run: trial[run] for run, point in longer.items()
                 if _point_finished(suite, run, point, overrides, trial, memory)}
        if not grown:
            break
        extra.update(grown)
    write_csv(rows, memory)
    shared = {r["name"]: r["select_as"] for r in suite["runs"] if "select_as" in r}
    text = selection_markdown(table, grid, tasks, seeds, metric, all(greater.values()), shared,
                              rule.get("lengthen"), gains)
    write_csv(table, out / "selection.csv")
    atomic_write(out / "selection.md", lambda tmp: Path(tmp).write_text(text + "\n"))
    print(text)
    written = write_curves(curves, {run: point_name(point) for run, point in chosen.items()}, metric, out)
    if written:
        print("wrote " + ", ".join(map(str, written)))
    return {r["name"]: chosen[target(r)] for r in suite["runs"] if target(r) in chosen}


def train_suite(path: Path, overrides: Sequence[str] = (), report_only: bool = False, search_only: bool = False,
                only: Optional[List[str]] = None, seeds: Optional[List[int]] = None, gpus: Optional[int] = None,
                jobs: Optional[int] = None) -> int:
    """`dytune suite`: search the recipes (with a grid), train what has not finished, then report every finished run
    of the suite (whatever `only` and `seeds` trained this time).

    Args:
        path: The suite file.
        overrides: key=value settings for every run.
        report_only: Only rebuild the CSV, table and plot.
        search_only: With a grid: only train the search runs and write the selection.
        only, seeds: Train only these runs and seeds of the suite (`select`).
        gpus, jobs: Where runs train (`train_plan`).

    Returns:
        The exit code: 1 when no run has finished or a run failed, else 0.
    """
    overrides = list(overrides)
    suite = load_suite(path)
    if search_only and "grid" not in suite:
        raise ValueError(f"{path}: --search-only needs a grid and select block in the suite")
    part = select(suite, only, seeds)
    choices = run_selection(suite, part["runs"], overrides, not report_only, gpus, jobs) if "grid" in suite else None
    if search_only:
        return 0
    failed = run_suite(part, overrides, choices, gpus, jobs) if not report_only else []
    rows = collect(planned_runs(suite, overrides, choices), read_csv(Path(suite["output"]) / "results.csv"))
    if not rows:
        print("no finished run yet")
        return 1
    table, written = write_report(rows, list(suite["tasks"]), Path(suite["output"]))
    print(table)
    print("wrote " + ", ".join(map(str, written)))
    return 1 if failed else 0
