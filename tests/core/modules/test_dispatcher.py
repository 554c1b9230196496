import torch

from dytune.core.modules import TokenDispatcher, gumbel_sigmoid


def test_eval_keeps_tokens_whose_probability_exceeds_threshold():
    gate = TokenDispatcher(16, threshold=0.3).eval()
    x = torch.randn(4, 10, 16)
    expected = (torch.sigmoid(gate.scores(x)) > 0.3).float()
    assert torch.equal(gate(x), expected)
    assert abs(gate.threshold - 0.3) < 1e-6


def test_training_mask_is_hard_with_straight_through_gradient():
    torch.manual_seed(0)
    gate = TokenDispatcher(16).train()
    x = torch.randn(4, 10, 16)
    mask = gate(x)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    mask.sum().backward()
    assert gate.proj.weight.grad is not None and gate.proj.weight.grad.abs().sum() > 0


def test_gumbel_sigmoid_keeps_with_probability_sigmoid_of_logit():
    torch.manual_seed(0)
    logits = torch.tensor([-2.0, 0.0, 1.0]).expand(20000, 3)
    rate = gumbel_sigmoid(logits, tau=5.0, threshold=0.5).mean(0)
    assert torch.allclose(rate, torch.sigmoid(torch.tensor([-2.0, 0.0, 1.0])), atol=0.02)


def test_threshold_survives_half_precision():
    gate = TokenDispatcher(8)
    gate.set_threshold(1 - 1e-6)
    gate.half()
    assert gate.threshold > 0.99
