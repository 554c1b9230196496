"""`dytune eval --budgets` (accuracy against the keep rate, `budget_curve_run`) on every backbone family: the tiny
ViT of test_engine.py (global and per-layer calibration), a tiny Eva (EVA-02: rope, SwiGLU) and a tiny Swin (four
stages, windows) trained with DyT, recalibrated to each budget without changing the run."""
import json

import pytest

from dytune.cli import main
from dytune.engine import evaluate_run, train
from tests.engine.test_engine import config

FAMILIES = {
    "timm_vit": {},
    "timm_eva": dict(model="eva02_tiny_patch14_224", model_kwargs=dict(patch_size=8, depth=2, embed_dim=48,
                                                                        num_heads=3)),
    "timm_swin": dict(model="swin_tiny_patch4_window7_224", model_kwargs=dict(window_size=2, embed_dim=16,
                                                                              depths=[1, 1, 1, 1],
                                                                              num_heads=[1, 2, 2, 4])),
}


@pytest.mark.slow
@pytest.mark.parametrize("family,per_layer", [("timm_vit", False), ("timm_vit", True), ("timm_eva", False),
                                              ("timm_swin", False)])
def test_budget_curve_recalibrates_a_trained_run_without_changing_it(tmp_path, capsys, family, per_layer):
    final = train(config(tmp_path, method="dyt", **FAMILIES[family]))["final"]
    run, out = tmp_path / "run", tmp_path / "curve" / "budget.json"
    args = ["eval", str(run), "--budgets", "0,0.5,1", "--calibration-images", "8", "--out", str(out)]
    assert main(args + (["--per-layer"] if per_layer else [])) == 0
    assert "| as trained |" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["target_keep_rate"] for r in rows] == [None, 0.0, 0.5, 1.0]
    assert rows[0]["acc"] == pytest.approx(final["acc"]) and rows[0]["gmacs"] == pytest.approx(final["gmacs"])
    assert rows[1]["keep_rate"] <= 0.1 and rows[3]["keep_rate"] >= 0.9
    assert rows[1]["gmacs"] < rows[2]["gmacs"] < rows[3]["gmacs"]
    assert evaluate_run(run, checkpoint="last")["gmacs"] == pytest.approx(final["gmacs"])  # thresholds not saved
