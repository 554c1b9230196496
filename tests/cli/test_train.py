"""`dytune train` and `dytune eval --budgets` print their tables through the one table writer and print on rank 0
by the one rank test: the lines they always had."""
from dytune.cli import train as cli_train
from dytune.cli.train import format_budget_curve, results_table
from dytune.utils import distributed

RESULTS = {"metric": "acc", "method": "dyt", "epochs_done": 3, "trainable_params": 12757,
           "final": {"acc": 16.6667, "keep_rate": 0.557, "gmacs": 0.00123, "gmacs_pct_dense": 95.4,
                     "images_per_s": 981.9},
           "best": {"acc": 20.0, "gmacs": 0.0013, "images_per_s": 900.0, "epoch": 2}}


def test_results_table():
    header = ("| run | epoch | acc | keep rate | GMACs (% dense) | img/s | trainable params |\n"
              "|---|---|---|---|---|---|---|\n"
              "| dyt final | 3 | 16.67 | 0.557 | 0.001 (95.4 %) | 981.9 | 12,757 |")
    best = "| dyt best | 2 | 20.00 | 1 (no dispatcher) | 0.001 (100.0 %) | 900.0 | 12,757 |"
    assert results_table(RESULTS) == header + "\n" + best
    assert results_table({**RESULTS, "best": {}}) == header


def test_budget_curve_table():
    rows = [{"target_keep_rate": None, "metric": "acc", "acc": 16.7, "keep_rate": 0.55, "gmacs": 0.00123,
             "gmacs_pct_dense": 95.4, "images_per_s": 980},
            {"target_keep_rate": 0.5, "metric": "acc", "acc": 10.0, "gmacs": 0.001, "images_per_s": 1000}]
    assert format_budget_curve(rows) == (
        "| thresholds | keep rate | acc % | GMACs | % dense MACs | img/s |\n|---|---|---|---|---|---|\n"
        "| as trained | 0.550 | 16.70 | 0.0012 | 95.4 | 980 |\n| keep 0.50 | 1.000 | 10.00 | 0.0010 | nan | 1000 |")
    assert format_budget_curve([]) == ("| thresholds | keep rate | acc % | GMACs | % dense MACs | img/s |\n"
                                       "|---|---|---|---|---|---|")


def test_rank_zero_is_the_one_rank_test():
    assert cli_train.is_main_process is distributed.is_main_process
