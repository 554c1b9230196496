from copy import deepcopy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import dytune
from tests.conftest import converted, countable


@pytest.mark.parametrize("key", ["vit_cls", "deit_distilled", "registers_layerscale"])
@pytest.mark.parametrize("variant", dytune.VARIANTS)
@pytest.mark.parametrize("fused", [True, False])
def test_logits_unchanged_and_last_block_counts_prefix_only(key, variant, fused, images):
    model = converted(key, variant=variant).eval()
    if not fused:
        countable(model)
    with torch.no_grad():
        reference, features = model(images), model.forward_features(images)
        full_macs = dytune.count_macs(model, images)
        dytune.logits_only(model)
        logits = model(images)
        assert model.blocks[-1]._prefix_only
        assert torch.allclose(logits, reference, atol=1e-5), (logits - reference).abs().max()
        assert torch.equal(model.forward_features(images), features)  # only model(...) is pruned
        assert not model.blocks[-1]._prefix_only
        pruned_macs = dytune.count_macs(model, images)
    assert (pruned_macs < full_macs).all()
    last_block_rates = [m.float().mean().item() for m in model.blocks[-1].keep_masks.values()]
    assert last_block_rates[-1] == 0.0 or variant in ("attn", "layer")
    dytune.logits_only(model, enabled=False)
    with torch.no_grad():
        assert torch.equal(dytune.count_macs(model, images), full_macs)


@pytest.mark.parametrize("variant", dytune.VARIANTS)
def test_pruned_counts_match_torch_counter(variant, images):
    # batch 1: with attention dispatch the torch counter also counts the padding of packed batches
    model = dytune.logits_only(countable(converted(variant=variant)).eval())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images[:1])
    assert dytune.count_macs(model, images[:1], norms=False).item() == counter.get_total_flops() // 2


def test_training_and_masked_forwards_are_untouched(images):
    model = dytune.logits_only(converted())
    model.train()
    assert model(images).shape == (7, 5) and not model.blocks[-1]._prefix_only
    with dytune.execution(model.eval(), "masked"):
        model(images)
    assert not model.blocks[-1]._prefix_only


def test_a_deep_copy_prunes_its_own_last_block(images):
    model = dytune.logits_only(converted().eval())
    copy = deepcopy(model)
    with torch.no_grad():
        copy(images)
    assert copy.blocks[-1]._prefix_only and not model.blocks[-1]._prefix_only


def test_flag_is_cleared_when_the_forward_fails(images):
    model = dytune.logits_only(converted().eval())
    with pytest.raises(ValueError, match="expected images"):
        model(images[:, :2])
    assert not model.blocks[-1].prefix_output


@pytest.mark.parametrize("key, config, message", [
    ("avgpool_no_cls", {}, "global_pool='avg'"),
    ("vit_cls", {"experts": 3}, "mixture-of-experts"),
])
def test_rejects_models_whose_head_reads_more_than_the_prefix(key, config, message):
    with pytest.raises(ValueError, match=message):
        dytune.logits_only(converted(key, **config))


def test_refuses_a_last_block_hook_that_needs_the_patch_tokens():
    class Merge:
        needs_patch_tokens = True

        def __call__(self, block, x):
            return x

    model = converted("vit_cls")
    model.blocks[-1].between_sub_blocks = Merge()
    with pytest.raises(ValueError, match=r"needs the patch tokens \(Merge, e.g. token merging\)"):
        dytune.logits_only(model)
    model.blocks[-1].between_sub_blocks = lambda block, x: x  # a hook that works on the prefix tokens too
    dytune.logits_only(model)
