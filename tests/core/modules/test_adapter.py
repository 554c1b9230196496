import torch

from dytune.core.modules import Adapter, MoEAdapter


def test_adapters_start_as_zero_functions():
    x = torch.randn(2, 5, 16)
    assert torch.equal(Adapter(16, 4)(x), torch.zeros_like(x))
    assert torch.equal(MoEAdapter(16, 4, experts=3)(x), torch.zeros_like(x))


def test_moe_merges_expert_weights_per_image():
    torch.manual_seed(0)
    moe = MoEAdapter(16, 4, experts=3, scale=0.5).eval()
    for p in moe.parameters():
        p.data.normal_(0, 0.2)
    x = torch.randn(5, 7, 16)
    alpha = torch.softmax(moe.router(x.mean(1)), -1)
    expected = []
    for b in range(5):  # the reference: one merged adapter per image, built in a loop
        down = sum(alpha[b, e] * moe.down_weight[e] for e in range(3))
        up = sum(alpha[b, e] * moe.up_weight[e] for e in range(3))
        h = torch.relu(x[b] @ down + alpha[b] @ moe.down_bias)
        expected.append((h @ up + alpha[b] @ moe.up_bias) * 0.5)
    assert torch.allclose(moe(x), torch.stack(expected), atol=1e-5)


def test_moe_with_identical_experts_is_a_plain_adapter():
    torch.manual_seed(0)
    plain = Adapter(16, 4).eval()
    plain.up.weight.data.normal_()
    moe = MoEAdapter(16, 4, experts=2).eval()
    moe.router.weight.data.normal_()
    with torch.no_grad():
        moe.down_weight.copy_(plain.down.weight.t().expand(2, -1, -1))
        moe.down_bias.copy_(plain.down.bias.expand(2, -1))
        moe.up_weight.copy_(plain.up.weight.t().expand(2, -1, -1))
        moe.up_bias.copy_(plain.up.bias.expand(2, -1))
    x = torch.randn(3, 6, 16)
    assert torch.allclose(moe(x), plain(x), atol=1e-5)


def test_moe_costs_one_adapter_plus_routing():
    tokens = torch.tensor([10])
    assert Adapter(16, 4).macs(tokens).item() == 10 * 2 * 16 * 4
    assert MoEAdapter(16, 4, experts=3).macs(tokens).item() == 10 * 2 * 16 * 4 + 16 * 3 + 3 * (2 * 16 * 4 + 4 + 16)
