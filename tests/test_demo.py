import pytest

from dytune.cli import main
from dytune.pretrained import ASSETS


def test_demo_runs_end_to_end_on_a_reduced_setting(tmp_path, capsys):
    if not (ASSETS / "mini_vit.json").is_file():
        pytest.skip("the mini backbone is not in this copy")
    args = ["demo", "--task", "location", "--epochs", "1", "--train-images", "64", "--test-images", "64",
            "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--speed-batch", "16",
            "--repeats", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for line in ("test accuracy", "keep rate per layer", "MACs per image", "measured speed", "skip map"):
        assert line in out
    assert (tmp_path / "runs" / "location" / "skip_map.png").stat().st_size > 5000
    assert main(args) == 0  # a finished run is reused, not retrained
    assert "reusing the finished run" in capsys.readouterr().out
