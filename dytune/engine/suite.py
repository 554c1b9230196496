"""A benchmark suite: several methods x tasks x seeds with one engine, one CSV, one table and one plot.

The suite file (YAML) holds `base` (the mapping of TrainConfig settings every run starts from; a preset's `base:`,
by contrast, names preset files), `tasks`, `seeds` and `runs` (a name and the settings that differ, optionally its
own `seeds`), and `output`; optionally `task_settings`, settings per task (e.g. each video task's dataset layout and
data_root), applied after `base` and before the run's. Finished
runs are skipped and interrupted ones resumed, so the same command continues a suite. A run also counts as finished
when the suite's results.csv holds its row, so run folders (checkpoints) may be deleted without losing results.
`train_plan` is the one multi-run loop: `dytune vtab` trains its tasks with it too. `--gpus N` trains each run in a
`dytune train` process of its own, N at a time, one GPU each.

Recipe selection: `grid` names the settings searched (a list is an axis, every combination a point, a single value
is fixed; `warmup_fraction: f` sets warmup_epochs = f x epochs) and `select` how a search run trains and is scored
(settings that make the final split train/validation, e.g. train_split and eval_split, per task under
`task_settings`; the selection `tasks` and `seeds`, by default the suite's). Every run first trains each point on
the selection tasks and seeds (`<output>/search/<run>/<point>/<task>/seed<k>`, remembered in
`<output>/search/results.csv`), keeps the point with the best mean primary metric (ties: fewer epochs, then the lower
lr; `<output>/selection.csv`, `selection.md`), then trains with it on the suite's own split. A run with
`select_as: <run>` reuses that run's choice. `--search-only` stops after the choice.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from ..utils.errors import RunError
from ..utils.io import atomic_write
from ..tasks import TASKS
from ..run_config import TrainConfig
from ..methods import METHODS
from .selection import (SELECT_KEYS, check_selection, choose, grid_points, point_name, point_settings,
                        selection_markdown, target)

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
                   ) -> List[Tuple[str, TrainConfig]]:
    """(`<run>/<point>`, TrainConfig) per searching run in `names`, grid point, selection task and seed."""
    rule = suite["select"]
    explicit = _explicit(overrides)
    configs = []
    for run in (r for r in suite["runs"] if r["name"] in names and "select_as" not in r):
        for point in grid_points(suite["grid"]):
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


def run_suite(suite: Dict[str, Any], overrides: List[str] = (),
              choices: Optional[Dict[str, Dict[str, Any]]] = None, gpus: Optional[int] = None) -> List[str]:
    """Train every planned run that has not finished.

    Args:
        suite: The loaded suite (possibly restricted by `select`).
        overrides: key=value settings for every run.
        choices: With a grid, run -> chosen point (`run_selection`); runs without one are not trained.
        gpus: Where runs train (`train_plan`): None in this process, N in processes of their own.

    Returns:
        The runs whose process failed (`train_plan`).
    """
    return train_plan(planned_runs(suite, overrides, choices), Path(suite["output"]) / "results.csv", gpus)


def train_plan(plan: List[Tuple[str, TrainConfig]], results: Optional[Path] = None, gpus: Optional[int] = None,
               label: Callable[[str, TrainConfig], str] = lambda name, cfg: f"{name} {cfg.task} seed {cfg.seed}",
               announce_skipped: bool = False) -> List[str]:
    """Train the runs of `plan` that have not finished, resuming any that were interrupted: the one multi-run loop of
    `dytune suite` and `dytune vtab`.

    A run has finished when its folder holds results.json or `results` (a suite's CSV) holds its row. A run folder
    with run files but no checkpoint (an attempt that died before its first checkpoint) is started over.

    Args:
        plan: (run name, config) pairs, in training order.
        results: A suite's results CSV, whose rows count as finished runs.
        gpus: None: train in this process, one run after another (an error stops the loop). N >= 1: one `dytune
            train` process per run, N at a time, each on its own GPU (CUDA_VISIBLE_DEVICES); 0: such processes one
            after another on CPU. A failed process is reported and the loop goes on.
        label: How messages name a run.
        announce_skipped: Print a line for every finished run that is skipped.

    Returns:
        The labels of the runs whose process failed (always empty in this process, where an error propagates).
    """
    from .rundir import RUN_FILES, has_checkpoint
    from .trainer import train

    remembered = _row_keys(read_csv(results)) if results is not None else {}
    pending = []
    for i, (name, cfg) in enumerate(plan, start=1):
        out = Path(cfg.output_dir)
        if (out / "results.json").is_file() or (name, cfg.task, cfg.seed) in remembered:
            if announce_skipped:
                print(f"{label(name, cfg)}: done, skipped")
            continue
        resume = has_checkpoint(out)
        if not resume and any((out / f).exists() for f in RUN_FILES):
            print(f"{label(name, cfg)}: an earlier attempt left no checkpoint in {out}; starting it over")
            cfg.overwrite = True
        pending.append((f"[{i}/{len(plan)}] {label(name, cfg)}", label(name, cfg), cfg, resume))
    if gpus is None:
        for heading, _, cfg, resume in pending:
            print(heading)
            train(cfg, resume=resume)
        return []
    failed: List[str] = []
    running: List[Tuple[str, subprocess.Popen]] = []
    for i, (heading, text, cfg, resume) in enumerate(pending):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        print(heading + (f" on GPU {i % gpus}" if gpus else ""))
        running.append((text, subprocess.Popen(train_command(cfg, resume), env=env)))
        if len(running) >= max(1, gpus):
            done, proc = running.pop(0)
            if proc.wait():
                failed.append(done)
    failed += [done for done, proc in running if proc.wait()]
    if failed:
        print(f"failed: {', '.join(failed)} (rerun the same command to resume them)")
    return failed


def train_command(cfg: TrainConfig, resume: bool = False) -> List[str]:
    """The `dytune train` command line that trains `cfg` in a process of its own: every setting as key=value, which
    `TrainConfig.load` reads back exactly (a text as typed when YAML reads it so, JSON otherwise)."""
    def text(value: Any) -> str:
        return value if isinstance(value, str) and yaml.safe_load(value) == value else json.dumps(value)

    settings = [f"{key}={text(value)}" for key, value in cfg.to_dict().items()]
    return [sys.executable, "-m", "dytune", "train", *settings, *(["--resume"] if resume else [])]


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


def run_selection(suite: Dict[str, Any], runs: Sequence[Dict[str, Any]], overrides: List[str] = (),
                  train: bool = True, gpus: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
    """Search the grid for `runs` (training what is missing when `train`), then score every searching run of the
    suite from what is on disk and write `selection.csv` and `selection.md`.

    Args:
        suite: The loaded suite, with `grid` and `select`.
        runs: The runs about to be trained (their `select_as` runs are searched for them).
        overrides: key=value settings for every run.
        train: Train the missing search runs; otherwise only report.
        gpus: Where search runs train (`train_plan`); a failed one stops the suite before any choice.

    Returns:
        Run name -> its chosen grid point (axis values), for every run of the suite whose choice is known.
    """
    out = Path(suite["output"])
    memory = out / "search" / "results.csv"
    if train:
        failed = train_plan(planned_search(suite, _searching(suite, runs), overrides), memory, gpus)
        if failed:
            raise RunError(f"{out}: search run(s) {', '.join(failed)} failed; rerun the same command to resume them")
    plan = planned_search(suite, _searching(suite, suite["runs"]), overrides)
    rows = collect(plan, read_csv(memory))
    if not rows:
        print("no search run finished yet")
        return {}
    write_csv(rows, memory)
    rule = suite["select"]
    tasks, seeds = rule.get("tasks", suite["tasks"]), rule.get("seeds", suite["seeds"])
    greater = _greater_is_better(plan)
    table, chosen = choose(rows, suite["grid"], tasks, seeds, greater)
    shared = {r["name"]: r["select_as"] for r in suite["runs"] if "select_as" in r}
    text = selection_markdown(table, suite["grid"], tasks, seeds, labels(rows)[0], all(greater.values()), shared)
    write_csv(table, out / "selection.csv")
    atomic_write(out / "selection.md", lambda tmp: Path(tmp).write_text(text + "\n"))
    print(text)
    return {r["name"]: chosen[target(r)] for r in suite["runs"] if target(r) in chosen}


def _row_keys(rows: List[Dict[str, Any]]) -> Dict[Tuple[str, str, int], Dict[str, Any]]:
    return {(r["run"], r["task"], r["seed"]): r for r in rows}


def read_csv(path: Path) -> List[Dict[str, Any]]:
    """The rows of a suite's results.csv (none when it does not exist), typed as `collect` makes them."""
    if not path.is_file():
        return []

    def number(text: str) -> Any:
        if text == "":
            return ""
        value = float(text)
        return int(value) if value.is_integer() and "." not in text else value

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"run", "task", "seed", "acc", "keep_rates"} - set(rows[0] if rows else ())
    if rows and missing:
        raise ValueError(f"{path}: not a suite results file (no column {sorted(missing)})")
    return [{k: (v if k in ("run", "method", "task", "metric", "unit") else
                 [float(x) for x in v.split()] if k == "keep_rates" else number(v)) for k, v in r.items()}
            for r in rows]


def collect(plan: List[Tuple[str, TrainConfig]],
            remembered: Sequence[Dict[str, Any]] = ()) -> List[Dict[str, Any]]:
    """One row per finished run of the plan: from its results.json, else from `remembered` rows (an earlier
    results.csv of the suite, which keeps the results of runs whose folders were deleted)."""
    rows = []
    earlier = _row_keys(list(remembered))
    for name, cfg in plan:
        file = Path(cfg.output_dir) / "results.json"
        if not file.is_file():
            if (name, cfg.task, cfg.seed) in earlier:
                rows.append(earlier[(name, cfg.task, cfg.seed)])
            continue
        r = json.loads(file.read_text())
        final = r["final"]
        rows.append({"run": name, "method": cfg.method, "task": cfg.task, "seed": cfg.seed,
                     "target_rate": cfg.target_rate if METHODS[cfg.method].dynamic else "",
                     "acc": final[r["metric"]], "keep_rate": final.get("keep_rate", 1.0), "gmacs": final["gmacs"],
                     "gmacs_pct_dense": final.get("gmacs_pct_dense", ""), "images_per_s": final["images_per_s"],
                     "trainable_params": r["trainable_params"], "keep_rates": final.get("keep_rates", []),
                     "metric": r["metric"], "unit": TASKS[r["task_type"]].sample_unit})
    return rows


def write_csv(rows: List[Dict[str, Any]], path: Path) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            # the union of the rows' columns: rows remembered from an older file may lack newer ones
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows({k: " ".join(f"{v:.4f}" for v in x) if isinstance(x, list) else x for k, x in r.items()}
                             for r in rows)

    atomic_write(path, write)


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
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary:
        mean = f"{s['mean']:.2f} ± {s['std']:.2f} ({s['seeds']})" if s["mean"] is not None else "incomplete"
        cells = [s["run"], *(f"{s['per_task'][t]:.1f}" if t in s["per_task"] else "" for t in tasks), mean,
                 f"{s['keep_rate']:.2f}", f"{s['gmacs']:.4f} ({s['gmacs_pct_dense']:.0f} %)",
                 f"{s['images_per_s']:.0f}", f"{s['trainable_params']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def layer_keep_rates(rows: List[Dict[str, Any]], key: str) -> Dict[str, List[float]]:
    """Mean keep rate per layer, grouped by `key` ("run" or "task"), over the rows of dynamic models."""
    groups: Dict[str, List[List[float]]] = {}
    for r in rows:
        if r["keep_rates"]:
            groups.setdefault(r[key], []).append(r["keep_rates"])
    return {name: [statistics.mean(layer) for layer in zip(*rates)] for name, rates in groups.items()}


def keep_rate_markdown(per_run: Dict[str, List[float]]) -> str:
    """Table of the mean keep rate per layer of every dynamic run."""
    depth = max(len(v) for v in per_run.values())
    lines = ["| run | " + " | ".join(f"layer {i}" for i in range(depth)) + " |", "|" + "---|" * (depth + 1)]
    lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in rates) + " |" for name, rates in per_run.items()]
    return "\n".join(lines)


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


def plot(summary: List[Dict[str, Any]], path: Path, metric: str = "accuracy", unit: str = "img") -> Path:
    """The metric against GMACs and against measured samples/s, one point per run with its seed std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [s for s in summary if s["mean"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "gmacs", f"GMACs per {unit}"), (axes[1], "images_per_s", f"measured {unit}/s")):
        for s in done:
            ax.errorbar(s[key], s["mean"], yerr=s["std"], fmt="o", capsize=3)
            ax.annotate(s["run"], (s[key], s["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel(f"mean {metric} over tasks (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="run a benchmark suite", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", type=Path, help="suite YAML, e.g. configs/minivtab_suite.yaml")
    p.add_argument("overrides", nargs="*", help="key=value settings applied to every run (e.g. epochs=2)")
    p.add_argument("--report-only", action="store_true", help="only rebuild the CSV, table and plot")
    p.add_argument("--search-only", action="store_true",
                   help="with a grid: only train the search runs and write selection.csv / selection.md")
    p.add_argument("--only", nargs="+", default=None, metavar="RUN", help="train only these runs of the suite")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                   help="train only these seeds of each run (e.g. --seeds 0 for a first pass)")
    p.add_argument("--gpus", type=int, default=None, metavar="N",
                   help="train each run in a `dytune train` process of its own, N at a time, one GPU each (0: one "
                        "after another on CPU; default: every run in this process, one after another)")
    p.set_defaults(run=run)


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


def run(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    if args.search_only and "grid" not in suite:
        raise ValueError(f"{args.suite}: --search-only needs a grid and select block in the suite")
    part = select(suite, args.only, args.seeds)
    choices = (run_selection(suite, part["runs"], args.overrides, not args.report_only, args.gpus)
               if "grid" in suite else None)
    if args.search_only:
        return 0
    failed = run_suite(part, args.overrides, choices, args.gpus) if not args.report_only else []
    # the report covers every finished run of the suite, whatever --only and --seeds trained this time
    rows = collect(planned_runs(suite, args.overrides, choices), read_csv(Path(suite["output"]) / "results.csv"))
    if not rows:
        print("no finished run yet")
        return 1
    out = Path(suite["output"])
    tasks = list(suite["tasks"])
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
    print(table)
    print("wrote " + ", ".join(map(str, written)))
    return 1 if failed else 0
