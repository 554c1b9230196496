import csv

import pytest
import yaml

from dytune.cli import main
from dytune.engine.suite import layer_keep_rates
from tests.engine.fixtures import write_vtab_task
from tests.engine.test_engine import TINY


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
