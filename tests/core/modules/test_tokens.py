"""Bucketed sparse execution: padded rows change no output, and the gathered shapes form a small fixed set."""
import pytest
import torch

import dytune
from dytune.core.calibrate import dispatchers
from dytune.core.modules.tokens import add_tokenwise, bucketed, pack, pad_index
from tests.conftest import converted

VARIANTS = ["mlp", "attn", "attn_mlp", "layer"]


def test_bucket_rule():
    assert [bucketed(n, 16) for n in (0, 1, 15, 16, 17, 511, 512, 513, 1024, 1025, 4100)] == [
        0, 16, 16, 16, 32, 512, 512, 528, 1024, 1056, 4224]
    assert all(bucketed(n, 1) == n for n in range(300))
    assert all(n <= bucketed(n, 16) <= bucketed(n + 1, 16) for n in range(5000))
    assert max(bucketed(n, 16) / n for n in range(512, 20000)) <= 1 + 1 / 32
    assert len({bucketed(n, 16) for n in range(1, 10000)}) <= 16 + 5 * 32
    with pytest.raises(ValueError, match="bucket=0"):
        bucketed(5, 0)


def test_pad_index_repeats_a_real_row():
    index = torch.tensor([3, 8, 9])
    assert pad_index(index, 1) is index
    assert pad_index(index, 4).tolist() == [3, 8, 9, 3]


@pytest.mark.parametrize("bucket", [1, 4, 16])
def test_padded_rows_never_reach_an_output(bucket):
    gen = torch.Generator().manual_seed(0)
    x, out = torch.randn(3, 11, 8, generator=gen), torch.randn(3, 11, 8, generator=gen)
    keep = (torch.rand(3, 11, generator=gen) > 0.5).float()
    rows = []

    def fn(t):
        rows.append(t.shape[0])
        return t * 2 + 1e6 * (torch.arange(t.shape[0]) >= int(keep.sum())).unsqueeze(1)  # poison the padding

    result = add_tokenwise(out.clone(), x, keep, fn, bucket)
    expected = out + keep.unsqueeze(-1) * (x * 2 + 0)
    assert rows == [bucketed(int(keep.sum()), bucket)]
    assert torch.allclose(result, expected, atol=1e-5)
    assert torch.equal(result[keep == 0], out[keep == 0])


def test_pack_width_is_bucketed_and_capped():
    keep = torch.zeros(2, 20)
    keep[0, :5] = 1
    keep[1, :3] = 1
    order, valid = pack(keep, 8)
    assert order.shape == (2, 8) and valid.sum(1).tolist() == [5, 3]
    assert pack(keep, 1)[0].shape == (2, 5)
    keep[0] = 1
    assert pack(keep, 16)[0].shape == (2, 20)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("experts", [1, 3])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("key", ["vit_cls", "registers_layerscale"])
def test_bucketed_sparse_equals_exact_sparse_and_masked(variant, experts, batch, key, images):
    model = converted(key, variant=variant, experts=experts).eval()
    x = images[:batch]
    outputs = {}
    with torch.no_grad():
        for bucket in (1, 5, 16):
            with dytune.execution(model, "sparse", bucket=bucket):
                outputs[bucket] = model(x)
        kept = [int(m.sum()) + batch * model.num_prefix_tokens for m in dytune.keep_masks(model)]
        with dytune.execution(model, "masked"):
            masked = model(x)
    assert any(k % 16 for k in kept), "the test needs kept counts that are not multiples of the bucket"
    for bucket in (5, 16):
        assert (outputs[bucket] - outputs[1]).abs().max().item() <= 1e-5
        assert (outputs[bucket] - masked).abs().max().item() <= 1e-5
    assert model.blocks[0].bucket == 16, "execution() restores the blocks' bucket"


def test_execution_rejects_a_bad_bucket():
    model = converted().eval()
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="bucket="), dytune.execution(model, "sparse", bucket=bad):
            pass


@pytest.mark.parametrize("variant", VARIANTS)
def test_gathered_shapes_are_bounded(variant):
    model = converted("vit_cls", variant=variant).eval()
    gates = dispatchers(model)
    gen = torch.Generator().manual_seed(5)
    shapes = {1: set(), 16: set()}
    block = model.blocks[1]
    current = set()
    # fc1 and qkv see every row that the MLP and attention compute: gathered (MLP) or packed (attention) tokens
    handles = [block.mlp.fc1.register_forward_pre_hook(lambda m, a: current.add(("mlp", a[0].shape[:-1]))),
               block.attn.qkv.register_forward_pre_hook(lambda m, a: current.add(("attn", a[0].shape[:-1])))]
    with torch.no_grad():
        for _ in range(60):
            images = torch.randn(16, 3, 32, 32, generator=gen) * (0.2 + 2 * torch.rand(1, generator=gen))
            for gate in gates:
                gate.logit_threshold.fill_(float(torch.randn(1, generator=gen)))
            for bucket, seen in shapes.items():
                with dytune.execution(model, "sparse", bucket=bucket):
                    current.clear()
                    model(images)
                    seen.update(current)
    for handle in handles:
        handle.remove()
    # 16 images x 17 tokens: gathered rows are multiples of 16 (at most 272), packed [16, width] has width 16 or 17
    allowed = {("mlp", torch.Size([16 * k])) for k in range(1, 18)} | {("mlp", torch.Size([16, 17]))}
    allowed |= {("attn", torch.Size([16, w])) for w in (16, 17)}
    assert shapes[16] <= allowed
    assert len(shapes[16]) < len(shapes[1])
