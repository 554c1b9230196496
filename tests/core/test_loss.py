import pytest
import torch
import torch.nn.functional as F

import dytune
from dytune import DyTLoss
from tests.conftest import converted

TARGETS = torch.arange(7) % 5


def _forwards(model):
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    return calls


@pytest.mark.parametrize("kwargs, parts, forwards", [
    (dict(), {"ce", "rate", "teacher_ce", "distill"}, 2),
    (dict(distill=False), {"ce", "rate"}, 1),
    (dict(distill=False, teacher_ce=True), {"ce", "rate", "teacher_ce"}, 2),
    (dict(rate_weight=0.0), {"ce", "teacher_ce", "distill"}, 2),
])
def test_terms_switch_on_and_off(kwargs, parts, forwards, images):
    torch.manual_seed(0)
    model = converted().train()
    calls = _forwards(model)
    total, out = DyTLoss(target_rate=0.3, **kwargs)(model, images, TARGETS)
    assert len(calls) == forwards
    assert set(out) == parts | {"loss", "keep_rate", "keep_rates"}
    weights = {"rate": kwargs.get("rate_weight", 2.0)}
    assert torch.allclose(total, sum(weights.get(k, 1.0) * out[k] for k in parts))
    assert out["keep_rates"].shape == (2,) and torch.allclose(out["keep_rates"].mean(), out["keep_rate"])


def test_rate_term_is_squared_distance_of_mean_keep_rate(images):
    torch.manual_seed(0)
    model = converted().train()
    _, parts = DyTLoss(target_rate=0.3, distill=False)(model, images, TARGETS)
    rate = torch.cat([m.flatten() for m in dytune.keep_masks(model)]).mean()
    assert torch.allclose(parts["keep_rate"], rate)
    assert torch.allclose(parts["rate"], (rate - 0.3) ** 2)


def test_teacher_is_detached_inside_the_kl(images):
    model = converted().train()
    criterion = DyTLoss(target_rate=0.5, ce_weight=0.0, rate_weight=0.0, teacher_ce=False)
    torch.manual_seed(0)
    criterion(model, images, TARGETS)[0].backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    torch.manual_seed(0)
    student = model(images)
    with torch.no_grad(), dytune.execution(model, "complete"):
        teacher = model(images)
    F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True, reduction="batchmean").backward()
    reference = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads, reference))


def test_non_finite_loss_is_an_error(images):
    model = converted().train()
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="not finite"):
        DyTLoss()(model, bad, TARGETS)


@pytest.mark.parametrize("kwargs", [dict(target_rate=0.0), dict(target_rate=1.2), dict(rate_weight=-1.0)])
def test_bad_settings_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        DyTLoss(**kwargs)
