import pytest

from dytune.cli import main
from dytune.pretrained import ASSETS

KINDS = {
    # --task: (extra arguments, the metric line, the sample unit)
    "image": (["--subset", "location"], "test acc", "img"),
    "video": (["--subset", "shapes_motion"], "test acc", "clip"),
    "seg": ([], "test miou", "img"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_demo_runs_end_to_end_on_a_reduced_setting(kind, tmp_path, capsys):
    if not (ASSETS / "mini_vit.json").is_file():
        pytest.skip("the mini backbone is not in this copy")
    if kind == "video":
        pytest.importorskip("av")
    extra, metric, unit = KINDS[kind]
    args = ["demo", "--task", kind, *extra, "--epochs", "1", "--train-images", "32", "--test-images", "16",
            "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--speed-batch", "4",
            "--repeats", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for line in (metric, "keep rate per layer", f"MACs per {unit}", f"{unit}/s vs dense", "over 1 rounds", "threads",
                 "skip map"):
        assert line in out
    picture = next((tmp_path / "runs").glob("*/skip_map.png"))
    assert picture.stat().st_size > 5000
    assert main(args) == 0  # a finished run is reused, not retrained
    assert "reusing the finished run" in capsys.readouterr().out


def test_demo_speed_reports_its_spread_and_threads():
    import time

    import torch

    from dytune.mini.demo import speed

    delays = iter([0.001, 0.002, 0.008])  # the warm-up, then two rounds of a busy machine: the second 4x slower

    def dense(x):
        time.sleep(next(delays))
        return x

    def dyt(x):
        time.sleep(0.001)
        return x

    timing = speed(dyt, dense, torch.zeros(2, 3), lambda model, x: model(x), repeats=2)
    assert timing["rounds"] == 2 and timing["threads"] == torch.get_num_threads()
    assert timing["spread"] > 0.3  # per-round speed-ups near 2 and 8


def test_demo_refuses_a_subset_of_another_data_set(tmp_path, capsys):
    assert main(["demo", "--task", "seg", "--subset", "digits", "--data-root", str(tmp_path)]) != 0
    assert "--subset 'digits' is not one of nothing" in capsys.readouterr().err
