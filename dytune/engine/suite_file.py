"""A suite file: loading and checking it, restricting it to some runs and seeds, and the config of every run it
plans (the final runs and, with a grid, the search runs)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from ..run_config import TrainConfig
from .selection import SELECT_KEYS, check_selection, point_name, point_settings, run_points

__all__ = ["RUN_KEYS", "load_suite", "select", "run_config", "planned_runs", "planned_search"]

RUN_KEYS = ("name", "seeds", "select_as")  # a run's entries that are not TrainConfig settings


def load_suite(path: Path) -> Dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: suite file not found")
    suite = yaml.safe_load(Path(path).read_text()) or {}
    missing = [k for k in ("base", "tasks", "seeds", "runs", "output") if k not in suite]
    if missing:
        raise ValueError(f"{path}: missing {missing}; a suite holds base, tasks, seeds, runs and output")
    if not isinstance(suite["base"], dict):
        raise ValueError(f"{path}: base={suite['base']!r}: expected a mapping of settings (a suite's base holds the "
                         f"settings themselves; naming preset files is a preset's base:)")
    unknown = sorted(set(suite.get("task_settings") or {}) - set(suite["tasks"]))
    if unknown:
        raise ValueError(f"{path}: task_settings for {unknown}, which are not in tasks {suite['tasks']}")
    names = [r.get("name") for r in suite["runs"]]
    if None in names or len(set(names)) != len(names):
        raise ValueError(f"{path}: every run needs a distinct name, got {names}")
    check_selection(Path(path), suite)
    return suite


def _explicit(overrides: Sequence[str]) -> Dict[str, Any]:
    """The settings the command line's key=value overrides set, parsed."""
    extra = TrainConfig.load([], overrides).to_dict() if overrides else {}
    return {k: extra[k] for k in (o.partition("=")[0].strip() for o in overrides)}


def run_config(suite: Dict[str, Any], run: Dict[str, Any], task: str, seed: int, output_dir: Path,
               layers: Sequence[Dict[str, Any]] = (), explicit: Optional[Dict[str, Any]] = None,
               source: str = "") -> TrainConfig:
    """One run's config: base, the task's settings, the run's, then `layers` (grid point, selection settings), the
    command line's overrides last; a `warmup_fraction` in the layers sets warmup_epochs = fraction x epochs.

    Args:
        suite: The loaded suite.
        run: One entry of `runs`.
        task, seed, output_dir: Where and what this run trains.
        layers: Further settings, later ones winning.
        explicit: The command line's settings (`_explicit`).
        source: Names the run in errors.
    """
    values = {**suite["base"], **(suite.get("task_settings") or {}).get(task, {}),
              **{k: v for k, v in run.items() if k not in RUN_KEYS}}
    for layer in layers:
        values.update(layer)
    fraction = values.pop("warmup_fraction", None)
    values.update({"task": task, "seed": seed, "output_dir": str(output_dir), **(explicit or {})})
    source = source or f"suite run {run['name']}"
    cfg = TrainConfig.from_dict(values, source=source)
    if fraction is not None and "warmup_epochs" not in (explicit or {}):
        cfg = TrainConfig.from_dict({**values, "warmup_epochs": round(fraction * cfg.epochs, 6)}, source=source)
    return cfg


def planned_runs(suite: Dict[str, Any], overrides: List[str] = (),
                 choices: Optional[Dict[str, Dict[str, Any]]] = None) -> List[Tuple[str, TrainConfig]]:
    """(run name, TrainConfig) per (run, task, seed), validated before anything trains. With a grid, only the runs
    in `choices` (run -> chosen grid point) are planned, each with its point."""
    configs = []
    explicit = _explicit(overrides)
    for run in suite["runs"]:
        if "grid" in suite and run["name"] not in (choices or {}):
            continue
        layers = [point_settings(suite["grid"], choices[run["name"]])] if "grid" in suite else []
        for task in suite["tasks"]:
            for seed in run.get("seeds", suite["seeds"]):
                out = Path(suite["output"]) / run["name"] / task / f"seed{seed}"
                configs.append((run["name"], run_config(suite, run, task, seed, out, layers, explicit)))
    return configs


def planned_search(suite: Dict[str, Any], names: Sequence[str], overrides: List[str] = (),
                   extra: Optional[Mapping[str, Sequence[Dict[str, Any]]]] = None) -> List[Tuple[str, TrainConfig]]:
    """(`<run>/<point>`, TrainConfig) per searching run in `names`, point (the grid's, then the run's lengthened
    points in `extra`), selection task and seed."""
    rule = suite["select"]
    explicit = _explicit(overrides)
    configs = []
    for run in (r for r in suite["runs"] if r["name"] in names and "select_as" not in r):
        for point in run_points(suite["grid"], extra, run["name"]):
            name = f"{run['name']}/{point_name(point)}"
            for task in rule.get("tasks", suite["tasks"]):
                layers = [point_settings(suite["grid"], point),
                          {k: v for k, v in rule.items() if k not in SELECT_KEYS},
                          (rule.get("task_settings") or {}).get(task, {})]
                for seed in rule.get("seeds", suite["seeds"]):
                    out = Path(suite["output"]) / "search" / name / task / f"seed{seed}"
                    configs.append((name, run_config(suite, run, task, seed, out, layers, explicit,
                                                     source=f"suite search run {name}")))
    return configs


def select(suite: Dict[str, Any], only: Optional[List[str]] = None, seeds: Optional[List[int]] = None,
           ) -> Dict[str, Any]:
    """The suite restricted to the runs named `only` and to `seeds` (the others stay as they are on disk)."""
    names = [r["name"] for r in suite["runs"]]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"--only {unknown}: not runs of this suite ({', '.join(names)})")
    runs = [dict(r) for r in suite["runs"] if only is None or r["name"] in only]
    if seeds is not None:
        for r in runs:
            r["seeds"] = [s for s in r.get("seeds", suite["seeds"]) if s in seeds]
    return {**suite, "runs": [r for r in runs if r.get("seeds", suite["seeds"])]}
