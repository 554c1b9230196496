"""A suite report's Markdown tables, written by the one table writer (the lines they always had), and where its
plots put the run labels."""
import pytest

from dytune.engine.report import keep_rate_markdown, label_offsets, markdown

SUMMARY = [{"run": "dyt", "per_task": {"a": 71.234, "b": 55.0}, "seeds": 2, "mean": 63.117, "std": 1.2345,
            "gmacs": 0.00123, "gmacs_pct_dense": 61.2, "images_per_s": 1234.5, "keep_rate": 0.5123,
            "trainable_params": 12757.0},
           {"run": "linear", "per_task": {"a": 50.0}, "seeds": 0, "mean": None, "std": 0.0, "gmacs": 0.002,
            "gmacs_pct_dense": 100.0, "images_per_s": 2000, "keep_rate": 1.0, "trainable_params": 1000.0}]


def test_summary_table():
    assert markdown(SUMMARY, ["a", "b"], "clip") == (
        "| run | a | b | mean ± std (seeds) | keep rate | GMACs (% dense) | clip/s | trainable params |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| dyt | 71.2 | 55.0 | 63.12 ± 1.23 (2) | 0.51 | 0.0012 (61 %) | 1234 | 12,757 |\n"
        "| linear | 50.0 |  | incomplete | 1.00 | 0.0020 (100 %) | 2000 | 1,000 |")
    assert markdown([], ["a"]) == ("| run | a | mean ± std (seeds) | keep rate | GMACs (% dense) | img/s | "
                                   "trainable params |\n|---|---|---|---|---|---|---|")


def test_keep_rate_table_fills_a_shallower_run_with_empty_cells():
    assert keep_rate_markdown({"dyt": [0.1, 0.25, 0.9], "dyt2": [0.5, 0.5]}) == (
        "| run | layer 0 | layer 1 | layer 2 |\n|---|---|---|---|\n| dyt | 0.10 | 0.25 | 0.90 |\n"
        "| dyt2 | 0.50 | 0.50 |  |")


@pytest.mark.parametrize("points, offsets", [
    ([(0, 0), (200, 0)], [(4, 4), (4, 4)]),                   # far apart: both above
    ([(0, 0), (10, 2)], [(4, 4), (4, 14)]),                   # start and one down meet the first: one up
    ([(0, 0), (5, 0), (9, 1)], [(4, 4), (4, -6), (4, 14)]),   # below, then above
    ([(0, 0), (0, 30)], [(4, 4), (4, 4)]),                    # stacked points far enough apart
    ([(100, 0), (0, 0)], [(4, 4), (4, 4)]),                   # a label ends before the next one starts
])
def test_label_offsets_keep_nearby_labels_apart(points, offsets):
    assert label_offsets(points, [50.0] * len(points)) == offsets
