import csv

import pytest

from dytune.engine.curves import (Curve, convergence_markdown, convergence_rows, late_gain, load_curves,
                                  mean_curve, mean_late_gains, read_curve, write_curves)


def write_log(path, accs, losses=None, metric="acc"):
    """A trainer-style log.csv: one row per epoch, the validation metric empty where None."""
    path.parent.mkdir(parents=True, exist_ok=True)
    losses = losses or [1.0 / (e + 1) for e in range(len(accs))]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "lr", "train_loss", f"eval_{metric}"])
        writer.writeheader()
        for epoch, (acc, loss) in enumerate(zip(accs, losses), start=1):
            writer.writerow({"epoch": epoch, "lr": 0.01, "train_loss": loss, f"eval_{metric}": "" if acc is None else acc})
    return path


def test_read_curve_keeps_unevaluated_epochs_as_none(tmp_path):
    log = write_log(tmp_path / "log.csv", [10.0, None, 30.0], [3.0, 2.0, 1.0], metric="mIoU")
    assert read_curve(log, "mIoU") == Curve([1, 2, 3], [3.0, 2.0, 1.0], [10.0, None, 30.0])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=f"{bad}: expected a training log with epoch and train_loss columns"):
        read_curve(bad, "acc")


def test_mean_curve_averages_the_shared_epochs():
    a = Curve([1, 2, 3], [2.0, 1.0, 0.5], [10.0, 20.0, 30.0])
    b = Curve([1, 2], [4.0, 3.0], [30.0, None])
    assert mean_curve([a, b]) == Curve([1, 2], [3.0, 2.0], [20.0, None])
    with pytest.raises(ValueError, match="no curves"):
        mean_curve([])


@pytest.mark.parametrize("metric, expected", [
    ([50.0] * 30, 0.0),                                            # flat
    ([float(e) for e in range(1, 31)], 10.0),                      # rising 1 point per epoch: epochs 28-30 vs 18-20
    ([float(min(e, 12)) for e in range(1, 31)], 0.0),              # risen, then flat by two thirds
    ([50.0] * 5, None),                                            # too short to tell
    ([None] * 24 + [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3.0),           # evaluated only late: the first 3 vs the last 3
])
def test_late_gain_compares_the_last_evaluations_with_those_at_two_thirds(metric, expected):
    curve = Curve(list(range(1, len(metric) + 1)), [1.0] * len(metric), metric)
    assert late_gain(curve) == (pytest.approx(expected) if expected is not None else None)


def test_late_gain_skips_epochs_without_evaluation():
    metric = [float(e) if e % 2 == 0 else None for e in range(1, 31)]  # evaluated every 2 epochs
    curve = Curve(list(range(1, 31)), [1.0] * 30, metric)
    assert late_gain(curve) == pytest.approx((28 + 30 + 26) / 3 - (16 + 18 + 20) / 3)


def test_convergence_table_and_files(tmp_path):
    logs = {("dyt", "a"): [write_log(tmp_path / "dyt/a/seed0/log.csv", [float(e) for e in range(1, 31)]),
                           write_log(tmp_path / "dyt/a/seed1/log.csv", [float(e) + 2 for e in range(1, 31)])],
            ("dyt", "b"): [write_log(tmp_path / "dyt/b/seed0/log.csv", [40.0] * 30)],
            ("linear", "a"): [write_log(tmp_path / "linear/a/seed0/log.csv", [20.0] * 30),
                              tmp_path / "linear/a/seed1/log.csv"],  # missing: skipped
            ("linear", "b"): [tmp_path / "nowhere/log.csv"]}
    curves = load_curves(logs, "acc")
    assert sorted(curves) == [("dyt", "a"), ("dyt", "b"), ("linear", "a")]
    assert curves[("dyt", "a")].metric[0] == 2.0  # the mean of the two seeds
    assert mean_late_gains(curves, ["a", "b"]) == {"dyt": pytest.approx(5.0), "linear": None}
    rows = convergence_rows(curves, {"dyt": "lr0.01-epochs30", "linear": "lr0.01-epochs30"})
    assert rows[0] == {"run": "dyt", "point": "lr0.01-epochs30", "task": "a", "epochs": 30, "last": 31.0,
                       "best": 31.0, "best_epoch": 30, "late_gain": pytest.approx(10.0),
                       "final_train_loss": pytest.approx(1 / 30)}
    assert rows[1]["best_epoch"] == 1  # flat: the first epoch at the best
    text = convergence_markdown(rows, "acc")
    assert "| dyt | lr0.01-epochs30 | a | 30 | 31.00 | 31.00 | 30 | 10.00 | 0.033 |" in text
    written = write_curves(curves, {"dyt": "p", "linear": "p"}, "acc", tmp_path / "out")
    assert [p.name for p in written] == ["curves.md", "curves.png"] and written[1].stat().st_size > 1000


def test_write_curves_needs_a_validation_curve(tmp_path):
    curves = {("r", "a"): Curve([1, 2], [1.0, 0.5], [None, 40.0])}  # evaluated once, after the last epoch
    assert write_curves(curves, {"r": "p"}, "acc", tmp_path) == [] and not (tmp_path / "curves.md").exists()
