"""Execution modes of every dispatch variant agree, and the sparse path really skips tokens."""
import pytest
import torch

import dytune
from dytune import DyTLoss
from dytune.core.calibrate import dispatchers
from dytune.core.modules.tokens import bucketed
from tests.conftest import converted, zoo_model

VARIANTS = ["mlp", "attn", "attn_mlp", "layer"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("experts", [1, 3])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("key", ["vit_cls", "registers_layerscale", "avgpool_no_cls"])
def test_sparse_equals_masked(variant, experts, batch, key, images):
    model = converted(key, variant=variant, experts=experts).eval()
    x = images[:batch]
    with torch.no_grad():
        sparse = model(x)
        rates = dytune.keep_rates(model)
        with dytune.execution(model, "masked"):
            masked = model(x)
    assert 0.0 < sum(rates) / len(rates) < 1.0, "the test needs some tokens kept and some skipped"
    assert (sparse - masked).abs().max().item() <= 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("key", ["vit_cls", "deit_distilled", "registers_layerscale", "clip_prenorm"])
def test_complete_mode_at_init_is_the_backbone(variant, key, images):
    backbone = zoo_model(key).eval()
    model = dytune.convert(zoo_model(key), dytune.DyTConfig(variant=variant, experts=2)).eval()
    with torch.no_grad(), dytune.execution(model, "complete"):
        assert torch.equal(model(images), backbone(images))


def _rows_into(module: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor) -> int:
    rows = []
    handle = module.register_forward_pre_hook(lambda m, args: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return sum(rows)


def test_sparse_mlp_sees_only_kept_tokens(images):
    model = converted("registers_layerscale").eval()
    block = model.blocks[1]
    rows = _rows_into(block.mlp, model, images)
    kept = int(block.keep_masks["mlp"].sum()) + images.shape[0] * model.num_prefix_tokens
    assert kept <= rows == bucketed(kept) < images.shape[0] * (16 + model.num_prefix_tokens)
    with dytune.execution(model, "sparse", bucket=1):
        assert _rows_into(block.mlp, model, images) == kept
    with dytune.execution(model, "masked"):
        assert _rows_into(block.mlp, model, images) == images.shape[0] * (16 + model.num_prefix_tokens)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("key", ["registers_layerscale", "avgpool_no_cls"])
def test_prefix_tokens_are_never_skipped(variant, key, images):
    model = converted(key, variant=variant).eval()
    for gate in dispatchers(model):
        gate.proj.bias.data.fill_(-1e4)  # every patch token skips
    block = model.blocks[0]
    with torch.no_grad():
        out_sparse = model(images)
        with dytune.execution(model, "masked"):
            out_masked = model(images)
    assert all(m.sum() == 0 for m in block.keep_masks.values())
    assert torch.allclose(out_sparse, out_masked, atol=1e-4)
    target = block.mlp if variant in ("mlp", "attn_mlp", "layer") else block.attn
    batch, prefix = images.shape[0], model.num_prefix_tokens
    tokens = model.patch_embed.num_patches + prefix
    padded = bucketed(batch * prefix) if target is block.mlp else batch * min(bucketed(prefix), tokens)  # rows, width
    assert _rows_into(target, model, images) == padded
    with dytune.execution(model, "sparse", bucket=1):
        assert _rows_into(target, model, images) == images.shape[0] * model.num_prefix_tokens


class FixedMask(torch.nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.mask = mask

    def forward(self, x):
        return self.mask.to(x.dtype)


@pytest.mark.parametrize("variant", ["attn", "layer"])
def test_kept_tokens_attend_only_among_themselves(variant):
    model = converted("vit_cls", variant=variant).eval()
    block = model.blocks[0]
    mask = torch.zeros(2, 16)
    mask[:, :5] = 1
    setattr(block, f"{variant}_dispatcher", FixedMask(mask))
    x = torch.randn(2, 17, 48)
    y = x.clone()
    y[:, 10:] += torch.randn(2, 7, 48)  # change skipped tokens only
    with torch.no_grad():
        for mode in ("sparse", "masked"):
            with dytune.execution(model, mode):
                out_x, out_y = block(x), block(y)
            assert torch.allclose(out_x[:, :6], out_y[:, :6], atol=1e-5)  # class token + 5 kept tokens


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("experts", [1, 3])
def test_straight_through_gradients_reach_every_dispatcher(variant, experts, images):
    torch.manual_seed(0)
    model = converted("vit_cls", variant=variant, experts=experts).train()
    # 0.3 of 2 x 7 x 16 tokens is not a whole number, so the rate term never vanishes; without it the last
    # block's dispatcher would get no gradient, as its patch tokens do not reach the class-token head
    loss, _ = DyTLoss(target_rate=0.3)(model, images, torch.arange(7) % 5)
    loss.backward()
    for gate in dispatchers(model):
        assert gate.proj.weight.grad is not None and gate.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "router" not in n)


def test_sparse_execution_refuses_training_mode(images):
    model = converted().train()
    with dytune.execution(model, "sparse"), pytest.raises(RuntimeError, match="inference"):
        model(images)


def test_default_modes_follow_train_and_eval(images):
    model = converted()
    block = model.blocks[0]
    assert block.train().mode == "masked" and block.eval().mode == "sparse"
    with dytune.execution(model, "complete"):
        assert block.mode == "complete"
        with torch.no_grad():
            model(images)
        assert dytune.keep_masks(model) == []
    assert block.execution is None
    with pytest.raises(ValueError, match="execution mode"):
        with dytune.execution(model, "fast"):
            pass


class CountingHook:
    """A `between_sub_blocks` hook that records its calls and drops the last patch token."""

    def __init__(self, drop: bool = False):
        self.calls = []
        self.drop = drop

    def __call__(self, block, x):
        self.calls.append((block, x.shape[1]))
        return x[:, :-1] if self.drop and x.shape[1] > block.num_prefix_tokens else x


@pytest.mark.parametrize("variant", VARIANTS)
def test_between_sub_blocks_hook_runs_once_per_block_per_forward(variant, images):
    model = converted("registers_layerscale", variant=variant).eval()
    hooks = [CountingHook() for _ in model.blocks]
    for block, hook in zip(model.blocks, hooks):
        block.between_sub_blocks = hook
    tokens = 16 + model.num_prefix_tokens
    with torch.no_grad():
        for mode in ("sparse", "masked", "complete"):
            with dytune.execution(model, mode):
                model(images)
        dytune.logits_only(model)
        model(images)  # the last block runs its prefix-only forward
    for i, (block, hook) in enumerate(zip(model.blocks, hooks)):
        last = i == len(model.blocks) - 1
        assert [b for b, _ in hook.calls] == [block] * 4
        assert [n for _, n in hook.calls] == [tokens] * 3 + [model.num_prefix_tokens if last else tokens]
    assert "between_sub_blocks" not in dict(model.named_children())  # a plain callable, not a sub-module


@pytest.mark.parametrize("variant", VARIANTS)
def test_hook_that_shortens_the_sequence_is_counted(variant, images):
    model = converted("vit_cls", variant=variant).eval()
    for block in model.blocks:
        block.between_sub_blocks = CountingHook(drop=True)
    with torch.no_grad():
        sparse = model(images)
        macs = dytune.count_macs(model, images)
        with dytune.execution(model, "masked"):
            masked = model(images)
    assert (sparse - masked).abs().max().item() <= 1e-4
    # the MLP sub-block gets one token fewer; with layer dispatch the hook runs after the whole layer
    expected = [None, None] if variant == "layer" else [16, 15]
    assert [b.last_forward().mlp_input_tokens for b in model.blocks] == expected
    for block in model.blocks:
        block.between_sub_blocks = None
    with torch.no_grad():
        assert (dytune.count_macs(model, images) > macs).all()
