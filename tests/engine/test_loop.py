"""The one optimisation step, learning-rate schedule and CSV log that `dytune train` and `dytune pretrain` share."""
import csv

import pytest
import torch
from torch import nn

from dytune.engine.csvlog import CsvLog
from dytune.engine.loop import OptimizerStep
from dytune.engine.optim import LrSchedule, lr_at


def _setup(accum_steps=1, clip_grad=None):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    schedule = LrSchedule(total=10, warmup=2, base=0.1, final=0.0)
    return model, OptimizerStep(optimizer, schedule, model.parameters(), clip_grad, accum_steps=accum_steps)


def test_schedule_is_lr_at_with_its_settings_bound():
    schedule = LrSchedule(100, 10, 1.0, 0.1, "poly", 2.0)
    assert [schedule(s) for s in (0, 10, 55, 100)] == [lr_at(s, 100, 10, 1.0, 0.1, "poly", 2.0) for s in (0, 10, 55, 100)]
    with pytest.raises(ValueError, match="lr schedule 'step'"):
        LrSchedule(10, 1, 1.0, 0.0, "step")


def test_a_step_sets_the_scheduled_lr_and_applies_the_gradient():
    model, step = _setup()
    x, before, bias = torch.randn(8, 4), model.weight.detach().clone(), model.bias.detach().clone()
    loss, parts = step(0, lambda: (model(x).pow(2).mean(), {"tag": 1}))
    assert parts == {"tag": 1} and step.lr == pytest.approx(0.05)  # warm-up: base * 1 / 2 at step 0
    w = before.clone().requires_grad_()
    expected = before - 0.05 * torch.autograd.grad(nn.functional.linear(x, w, bias).pow(2).mean(), w)[0]
    assert torch.allclose(model.weight, expected) and model.weight.grad is None


def test_accumulation_sums_gradients_until_the_group_ends():
    model, step = _setup(accum_steps=2)
    xs = torch.randn(2, 8, 4)
    ref, ref_step = _setup(accum_steps=1)
    step(2, lambda: (model(xs[0]).pow(2).mean(), {}), apply=False)
    assert model.weight.grad is not None  # kept for the next batch
    step(2, lambda: (model(xs[1]).pow(2).mean(), {}), apply=True)
    ref_step(2, lambda: (ref(xs.flatten(0, 1)).pow(2).mean(), {}))  # the mean over both batches at once
    assert torch.allclose(model.weight, ref.weight, atol=1e-6)


def test_clipping_bounds_the_update_and_a_non_finite_loss_is_refused_before_any_change():
    model, step = _setup(clip_grad=1e-3)
    before = model.weight.detach().clone()
    step(5, lambda: (1e6 * model(torch.randn(8, 4)).pow(2).mean(), {}))
    update = torch.cat([(model.weight - before).flatten()])
    assert update.norm() <= step.lr * 1e-3 * 1.0001
    before = model.weight.detach().clone()
    with pytest.raises(FloatingPointError, match="loss is nan"):
        step(6, lambda: (model(torch.randn(8, 4)).sum() * float("nan"), {}))
    assert torch.equal(model.weight, before) and model.weight.grad is None


def test_csv_log_drops_the_rows_a_resume_redoes(tmp_path):
    log = CsvLog(tmp_path / "log.csv", key="step")
    for step in (100, 200, 300):
        log.append({"step": step, "loss": step / 100})
    log.append({"step": 200, "loss": 9.0, "extra": "x"})  # resumed from the checkpoint at step 100
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["loss"], r["extra"]) for r in rows] == [("100", "1.0", ""), ("200", "9.0", "x")]
    assert not list(tmp_path.glob("*.tmp*"))
