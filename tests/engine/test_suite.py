import csv

import pytest
import yaml

from dytune.cli import main
from dytune.engine.selection import best_point, choose, grid_points, point_name, to_lengthen
from dytune.engine.report import layer_keep_rates
from dytune.engine.suite_file import load_suite
from tests.engine.fixtures import write_vtab_task
from tests.engine.test_engine import TINY


@pytest.mark.slow
def test_suite_runs_resumes_and_reports(tmp_path, capsys):
    for task in ("a", "b"):
        write_vtab_task(tmp_path / "data", task)
    suite = {
        "base": {**TINY, "dataset": "vtab", "data_root": str(tmp_path / "data"), "epochs": 1},
        "tasks": ["a", "b"],
        "seeds": [0, 1],
        "runs": [{"name": "dyt-r0.5", "method": "dyt", "target_rate": 0.5},
                 {"name": "linear", "method": "linear", "seeds": [0]}],
        "output": str(tmp_path / "suite"),
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["suite", str(path)]) == 0
    rows = list(csv.DictReader((tmp_path / "suite" / "results.csv").open()))
    assert len(rows) == 2 * 2 + 2
    table = (tmp_path / "suite" / "summary.md").read_text()
    assert "| dyt-r0.5 |" in table and "(2) |" in table and "| linear |" in table
    assert (tmp_path / "suite" / "accuracy_vs_cost.png").stat().st_size > 1000
    keep_rates = [r["keep_rates"] for r in rows]
    assert all(len(k.split()) == TINY["model_kwargs"]["depth"] for k in keep_rates[:4])
    assert keep_rates[-1] == ""  # linear probing has no dispatchers
    keep_table = (tmp_path / "suite" / "keep_rates.md").read_text()
    assert "| dyt-r0.5 |" in keep_table and "linear" not in keep_table
    assert (tmp_path / "suite" / "keep_rates.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["suite", str(path)]) == 0  # everything finished: nothing retrains
    assert "seed" not in capsys.readouterr().out.split("|")[0]

    # results.csv remembers finished runs: a deleted run folder neither retrains nor leaves the report, and a
    # restricted pass (--seeds) reports the whole suite
    import shutil
    shutil.rmtree(tmp_path / "suite" / "dyt-r0.5" / "a" / "seed1")
    assert main(["suite", str(path), "--seeds", "1"]) == 0
    assert "seed 1" not in capsys.readouterr().out.split("|")[0]
    assert list(csv.DictReader((tmp_path / "suite" / "results.csv").open())) == rows
    (tmp_path / "suite" / "results.csv").write_text("name,score\nx,1\n")
    assert main(["suite", str(path), "--report-only"]) != 0
    assert "results.csv: not a suite results file" in capsys.readouterr().err


def test_layer_keep_rates_average_per_group_and_skip_dense_runs():
    rows = [{"run": "dyt", "task": "a", "keep_rates": [1.0, 0.2]},
            {"run": "dyt", "task": "b", "keep_rates": [0.5, 0.4]},
            {"run": "linear", "task": "a", "keep_rates": []}]
    per_run = layer_keep_rates(rows, "run")
    assert list(per_run) == ["dyt"] and per_run["dyt"] == pytest.approx([0.75, 0.3])
    assert layer_keep_rates(rows, "task") == {"a": [1.0, 0.2], "b": [0.5, 0.4]}


def grid_suite(tmp_path, **changes):
    """A tiny suite with a 2-point grid (epochs 1 or 2) searched on task a's val200, and a run sharing a choice."""
    for task in ("a", "b"):
        if not (tmp_path / "data" / task).is_dir():
            write_vtab_task(tmp_path / "data", task)
    suite = {
        "base": {**TINY, "dataset": "vtab", "data_root": str(tmp_path / "data"), "epochs": 1},
        "tasks": ["a", "b"],
        "seeds": [0],
        "grid": {"epochs": [1, 2], "lr": 0.01, "warmup_fraction": 0.5},
        "select": {"train_split": "train800", "eval_split": "val200", "tasks": ["a"]},
        "runs": [{"name": "adaptformer", "method": "adaptformer"},
                 {"name": "linear", "method": "linear"},
                 {"name": "linear-shared", "method": "linear", "select_as": "linear"}],
        "output": str(tmp_path / "suite"),
        **changes,
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


@pytest.mark.slow
def test_grid_search_chooses_on_validation_then_trains_the_choice(tmp_path, capsys):
    path, out = grid_suite(tmp_path), tmp_path / "suite"
    assert main(["suite", str(path), "--search-only", "--only", "linear-shared"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["curves.md", "curves.png", "search", "selection.csv",
                                                     "selection.md"]
    assert sorted(p.name for p in (out / "search").iterdir()) == ["linear", "results.csv"]  # linear-shared's search
    searched = yaml.safe_load((out / "search/linear/epochs2/a/seed0/config.yaml").read_text())
    assert (searched["train_split"], searched["eval_split"], searched["warmup_epochs"]) == ("train800", "val200", 1.0)

    assert main(["suite", str(path)]) == 0
    table = list(csv.DictReader((out / "selection.csv").open()))
    assert [(r["run"], r["point"]) for r in table] == [(run, f"epochs{e}") for run in ("adaptformer", "linear")
                                                       for e in (1, 2)]
    for run in ("adaptformer", "linear"):
        rows = [r for r in table if r["run"] == run]
        assert all(float(r["a"]) == float(r["mean"]) for r in rows)  # one selection task, one seed
        best = max(float(r["mean"]) for r in rows)
        chosen = next(r for r in rows if float(r["mean"]) == best)  # ties go to fewer epochs: the first row
        assert [r["chosen"] for r in rows] == ["1" if r is chosen else "0" for r in rows]
        for name in [run] + (["linear-shared"] if run == "linear" else []):
            final = yaml.safe_load((out / name / "b" / "seed0" / "config.yaml").read_text())
            assert (final["epochs"], final["lr"], final["train_split"], final["eval_split"]) == (
                int(chosen["epochs"]), 0.01, "train800val200", "test")
            assert final["warmup_epochs"] == 0.5 * final["epochs"]
    assert "linear-shared uses linear's" in (out / "selection.md").read_text()
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 3 * 2

    # resumable: nothing retrains, also once a search folder is gone (search/results.csv remembers it)
    import shutil
    shutil.rmtree(out / "search" / "adaptformer" / "epochs1")
    capsys.readouterr()
    assert main(["suite", str(path)]) == 0
    assert "[1/" not in capsys.readouterr().out
    assert list(csv.DictReader((out / "selection.csv").open())) == table


def test_selection_rule_direction_and_ties():
    grid = {"lr": [0.01, 0.003], "epochs": [30, 15]}
    points = [{"lr": lr, "epochs": e} for lr in (0.01, 0.003) for e in (30, 15)]
    assert grid_points(grid) == points and point_name(points[0]) == "lr0.01-epochs30"
    assert best_point([1.0, 2.0, 2.0, 0.5], points, greater_is_better=True) == 1  # tie: fewer epochs
    assert best_point([2.0, 1.0, 2.0, 1.0], points, greater_is_better=True) == 2  # same epochs: lower lr
    assert best_point([1.0, 2.0, 0.5, 3.0], points, greater_is_better=False) == 2
    rows = [{"run": f"r/{point_name(p)}", "task": t, "seed": s, "acc": v}
            for p, v in zip(points, (1.0, 4.0, 3.0, 2.0)) for t in ("x", "y") for s in (0, 1)]
    table, chosen = choose(rows[:-1], grid, ["x", "y"], [0, 1], {"r": True})
    assert chosen == {} and table[-1]["mean"] is None and table[-1]["y"] is None  # a missing seed: incomplete
    table, chosen = choose(rows, grid, ["x", "y"], [0, 1], {"r": True})
    assert chosen == {"r": {"lr": 0.01, "epochs": 15}} and [r["chosen"] for r in table] == [0, 1, 0, 0]


LENGTHEN = {"late_gain_above": 1.0, "max_epochs": 48}


def test_lengthen_doubles_the_longest_chosen_point_while_its_curves_rise():
    grid = {"lr": [0.003, 0.01], "epochs": [15, 30]}
    rule = {"late_gain_above": 1.0, "max_epochs": 60}
    chosen = {"rising": {"lr": 0.01, "epochs": 30}, "flat": {"lr": 0.003, "epochs": 30},
              "short": {"lr": 0.01, "epochs": 15}, "unmeasured": {"lr": 0.01, "epochs": 30}}
    gains = {"rising": 2.5, "flat": 0.5, "short": 4.0, "unmeasured": None}
    assert to_lengthen(chosen, grid, None, gains, rule) == {"rising": {"lr": 0.01, "epochs": 60}}
    # searched already, or beyond max_epochs: nothing more
    assert to_lengthen(chosen, grid, {"rising": [{"lr": 0.01, "epochs": 60}]}, gains, rule) == {}
    chosen["rising"] = {"lr": 0.01, "epochs": 60}
    assert to_lengthen(chosen, grid, {"rising": [{"lr": 0.01, "epochs": 60}]}, gains, rule) == {}
    # a lengthened point takes part in the choice like a grid point
    rows = [{"run": f"rising/{name}", "task": "x", "seed": 0, "acc": acc}
            for name, acc in (("lr0.003-epochs15", 1.0), ("lr0.003-epochs30", 2.0), ("lr0.01-epochs15", 3.0),
                              ("lr0.01-epochs30", 4.0), ("lr0.01-epochs60", 5.0))]
    table, picked = choose(rows, grid, ["x"], [0], {"rising": True}, {"rising": [{"lr": 0.01, "epochs": 60}]})
    assert picked == {"rising": {"lr": 0.01, "epochs": 60}} and [r["chosen"] for r in table] == [0, 0, 0, 0, 1]


@pytest.mark.slow
def test_suite_lengthens_a_rising_choice_then_resumes(tmp_path, monkeypatch, capsys):
    import dytune.engine.suite as suite_module

    path = grid_suite(tmp_path, grid={"epochs": [6], "lr": 0.01, "warmup_fraction": 0.5},
                      select={"train_split": "train800", "eval_split": "val200", "eval_every": 1, "tasks": ["a"],
                              "lengthen": {"late_gain_above": 1.0, "max_epochs": 12}},
                      runs=[{"name": "linear", "method": "linear"}, {"name": "full", "method": "full"}])
    out = tmp_path / "suite"
    searched = []
    train_search = suite_module._train_search
    monkeypatch.setattr(suite_module, "_train_search",
                        lambda suite, names, *args: searched.append(list(names)) or train_search(suite, names, *args))
    # every chosen point "still rises", so the suite lengthens 6 -> 12 epochs and stops at max_epochs
    monkeypatch.setattr(suite_module, "mean_late_gains", lambda curves, tasks: {run: 2.0 for run, _ in curves})
    assert main(["suite", str(path), "--search-only"]) == 0
    printed = capsys.readouterr().out
    for run in ("linear", "full"):
        assert f"{run}: its validation curves still rose at epochs6 (late gain +2.00); searching epochs12" in printed
    # the grid, then both lengthened points in one plan (side by side with --jobs)
    assert searched == [["linear", "full"], ["linear", "full"]]
    longer = yaml.safe_load((out / "search/linear/epochs12/a/seed0/config.yaml").read_text())
    assert (longer["epochs"], longer["warmup_epochs"], longer["eval_split"]) == (12, 6.0, "val200")
    table = list(csv.DictReader((out / "selection.csv").open()))
    assert [(r["run"], r["point"]) for r in table] == [(run, point) for run in ("linear", "full")
                                                       for point in ("epochs6", "epochs12")]
    assert sum(int(r["chosen"]) for r in table) == 2
    text = (out / "selection.md").read_text()
    assert "Lengthened (select.lengthen)" in text and "linear +2.00" in text and "full +2.00" in text
    assert (out / "curves.md").is_file() and (out / "curves.png").stat().st_size > 0
    # rerun: the lengthened point is found on disk, nothing trains, the same choice
    assert main(["suite", str(path), "--search-only"]) == 0
    printed = capsys.readouterr().out
    assert "[1/" not in printed and "searching" not in printed and searched[2:] == [["linear", "full"]]
    assert list(csv.DictReader((out / "selection.csv").open())) == table
    # without the rule's trigger, the report keeps the finished lengthened point of the search
    monkeypatch.setattr(suite_module, "mean_late_gains", lambda curves, tasks: {run: 0.0 for run, _ in curves})
    assert main(["suite", str(path), "--search-only", "--report-only"]) == 0
    assert [r["point"] for r in csv.DictReader((out / "selection.csv").open())] == ["epochs6", "epochs6"]


@pytest.mark.parametrize("changes, message", [
    ({"grid": {"lr": [0.01]}, "select": None}, "grid and select go together"),
    ({"grid": {"lrr": [0.01]}}, r"grid key\(s\) \['lrr'\] are not settings"),
    ({"grid": {"task": ["a", "b"]}}, r"grid key\(s\) \['task'\]: the suite sets these per run"),
    ({"grid": {"lr": []}}, r"grid.lr=\[\]; an axis needs distinct values"),
    ({"grid": {"epochs": [1, 2], "warmup_fraction": 1.5}}, r"grid.warmup_fraction=1.5; expected one number in"),
    ({"grid": {"epochs": [1], "warmup_fraction": 0.1, "warmup_epochs": 1}},
     "grid sets both warmup_fraction and warmup_epochs"),
    ({"select": {"eval_split": "val200", "tasks": ["c"]}}, r"select.tasks=\['c'\]; expected a non-empty list"),
    ({"select": {"eval_split": "val200", "seeds": "0"}}, r"select.seeds='0'; expected a non-empty list of integers"),
    ({"select": {"eval_split": "val200", "by": "run"}}, r"select key\(s\) \['by'\] are neither settings nor"),
    ({"select": {"eval_split": "val200", "task_settings": {"c": {}}}},
     r"select.task_settings must map tasks of the suite \['a', 'b'\] to settings"),
    ({"select": {"train_split": "train800"}}, "select leaves task a evaluated on its final split 'test'"),
    ({"select": {"eval_split": "val200", "lengthen": {"late_gain_above": 1.0}}},
     r"select.lengthen=\{'late_gain_above': 1.0\}; "
     r"expected a mapping with exactly \['late_gain_above', 'max_epochs'\]"),
    ({"grid": {"lr": [0.01, 0.1]}, "select": {"eval_split": "val200", "lengthen": LENGTHEN}},
     "select.lengthen needs grid.epochs to be an axis of whole epochs, got None"),
    ({"grid": {"epochs": [6, 12]}, "select": {"eval_split": "val200", "eval_every": 1,
                                             "lengthen": {**LENGTHEN, "max_epochs": 20}}},
     r"select.lengthen.max_epochs=20; expected an integer >= 24"),
    ({"grid": {"epochs": [6, 12]}, "select": {"eval_split": "val200", "eval_every": 1,
                                             "lengthen": {**LENGTHEN, "late_gain_above": -1}}},
     r"select.lengthen.late_gain_above=-1; expected a number >= 0"),
    ({"grid": {"epochs": [6, 12]}, "select": {"eval_split": "val200", "eval_every": 3, "lengthen": LENGTHEN}},
     r"select.lengthen reads validation curves: set select.eval_every so that the longest search runs evaluate at "
     r"least 6 times \(at most 2 for grid.epochs \[6, 12\]\), got 3"),
    ({"runs": [{"name": "x", "method": "linear", "epochs": 3}]}, r"run x sets \['epochs'\], which grid sets"),
    ({"runs": [{"name": "x", "method": "linear", "warmup_epochs": 3}]}, r"run x sets \['warmup_epochs'\], which grid"),
    ({"runs": [{"name": "x", "method": "linear", "select_as": "y"}]}, "run x: select_as='y'; expected another run"),
    ({"runs": [{"name": "x", "method": "linear", "select_as": "y"},
               {"name": "y", "method": "linear", "select_as": "x"}]},
     "run x: select_as=.y. names a run that itself has select_as"),
])
def test_grid_and_select_errors_name_the_file_and_key(tmp_path, changes, message):
    path = grid_suite(tmp_path, **changes)
    if changes.get("select", 0) is None:
        suite = yaml.safe_load(path.read_text())
        del suite["select"]
        path.write_text(yaml.safe_dump(suite))
    with pytest.raises(ValueError, match=f"{path}: {message}"):
        load_suite(path)


@pytest.mark.slow
def test_select_as_and_search_only_need_a_grid(tmp_path, capsys):
    path = grid_suite(tmp_path, grid=None, select=None)
    suite = {k: v for k, v in yaml.safe_load(path.read_text()).items() if v is not None}
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(ValueError, match="run linear-shared has select_as but the suite has no grid"):
        load_suite(path)
    suite["runs"] = suite["runs"][:2]
    path.write_text(yaml.safe_dump(suite))
    assert main(["suite", str(path), "--search-only"]) != 0
    assert "--search-only needs a grid and select block" in capsys.readouterr().err


def test_the_paper_recipe_suite_plans_the_papers_vtab_recipe_for_dyt_and_adaptformer():
    """configs/minivtab_paper_recipe.yaml: every mini-VTAB task x 3 seeds for DyT r=0.5 and AdaptFormer at the
    paper's VTAB-1K recipe (100 epochs, lr 1e-3, 10 warm-up epochs), the base otherwise the grid suite's."""
    from pathlib import Path

    from dytune.engine.suite_file import planned_runs

    configs = Path(__file__).resolve().parents[2] / "configs"
    paper, grid = load_suite(configs / "minivtab_paper_recipe.yaml"), load_suite(configs / "minivtab_suite.yaml")
    plan = planned_runs(paper)
    assert len(plan) == 2 * 7 * 3 and paper["tasks"] == grid["tasks"]
    assert {(name, cfg.method, cfg.target_rate if cfg.method == "dyt" else None) for name, cfg in plan} == {
        ("dyt-r0.5", "dyt", 0.5), ("adaptformer", "adaptformer", None)}
    for _, cfg in plan:
        assert (cfg.epochs, cfg.lr, cfg.warmup_epochs, cfg.eval_every) == (100, 1e-3, 10, 100)
    recipe = {"lr", "epochs", "warmup_epochs", "eval_every"}
    assert {k: v for k, v in paper["base"].items() if k not in recipe} == {
        k: v for k, v in grid["base"].items() if k not in recipe}
