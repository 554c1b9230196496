"""The one accuracy-against-budget curve (dytune eval --budgets and dytune bench --accuracy-data both draw it)."""
import pytest
import torch

import dytune
from dytune.core.calibrate import budget_curve, dispatchers, sweep_keep_rates
from tests.conftest import converted


@pytest.mark.parametrize("per_layer", [False, True])
def test_budget_curve_rows_are_the_sweep_led_by_the_trained_thresholds(per_layer, images):
    model = converted(variant="attn_mlp").eval()
    trained = [g.logit_threshold.clone() for g in dispatchers(model)]

    def score():
        with torch.no_grad():
            macs = dytune.count_macs(model, images[4:])
        return {"training": model.training, "keep": dytune.keep_rates(model), "macs": macs.tolist()}

    rows = budget_curve(model, images[:4], [0.2, 0.6], score, per_layer, as_trained=True)
    assert [r["target_keep_rate"] for r in rows] == [None, 0.2, 0.6]
    assert rows[0] == {"target_keep_rate": None, **score()}  # the trained thresholds, before and after the sweep
    assert rows[1:] == sweep_keep_rates(model, images[:4], [0.2, 0.6],
                                        lambda rate: {"target_keep_rate": rate, **score()}, per_layer)
    assert not any(r["training"] for r in rows) and not model.training
    assert all(torch.equal(g.logit_threshold, t) for g, t in zip(dispatchers(model), trained))
    assert budget_curve(model, images[:4], [0.2, 0.6], score, per_layer) == rows[1:]
