"""Token merging: the matching algorithm, and its patch into timm ViTs and dytune models."""
import copy

import pytest
import torch

import dytune
from dytune.core.calibrate import dispatchers
from dytune.core.modules.blocks import BLOCK_VARIANTS
from dytune.core.tome import apply_tome, bipartite_soft_matching, set_r
from tests.conftest import converted, tiny_vit, zoo_model


def test_merge_keeps_size_weighted_sums_and_prefix_tokens():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 11, 6, generator=gen)
    size = torch.randint(1, 4, (2, 11, 1), generator=gen).float()
    matching = bipartite_soft_matching(x, r=3, num_prefix_tokens=1)
    merged, new_size = matching.merge(x, size)
    assert merged.shape == (2, 8, 6) and new_size.shape == (2, 8, 1)
    assert torch.allclose(merged[:, 0], x[:, 0]) and torch.equal(new_size[:, 0], size[:, 0])
    assert torch.allclose(new_size.sum(1), size.sum(1))
    assert torch.allclose((merged * new_size).sum(1), (x * size).sum(1), atol=1e-5)


def test_matching_merges_the_most_similar_pair_first():
    x = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(1))
    x[0, 4] = x[0, 1] * 3.0  # A token 4 (patch index 4) is parallel to B token 1: cosine 1
    matching = bipartite_soft_matching(x, r=1)
    assert matching.src.tolist() == [[2]] and matching.dst.tolist() == [[0]]  # A position 2, B position 0


def test_r_is_capped_and_zero_merges_nothing():
    x = torch.randn(1, 5, 4)
    assert bipartite_soft_matching(x, r=0) is None
    assert bipartite_soft_matching(x, r=10, num_prefix_tokens=1).r == 2


@pytest.mark.parametrize("key", ["vit_cls", "registers_layerscale", "avgpool_no_cls"])
def test_r_zero_equals_the_dense_model(key, images):
    dense = zoo_model(key).eval()
    tome = apply_tome(copy.deepcopy(dense), r=0)
    with torch.no_grad():
        assert torch.equal(tome(images), dense(images))
    set_r(tome, 3)
    with torch.no_grad():
        assert not torch.equal(tome(images), dense(images))
    assert tome.tome.size.sum(1).eq(16 + dense.num_prefix_tokens).all()  # every token is accounted for
    assert tome.state_dict().keys() == dense.state_dict().keys()


@pytest.mark.parametrize("variant", dytune.VARIANTS)
def test_dyt_plus_tome_runs_for_every_variant(variant, images):
    model = converted("registers_layerscale", variant=variant).eval()
    reference = copy.deepcopy(model)
    apply_tome(model, r=0, proportional_attention=variant == "mlp")
    with torch.no_grad():
        assert torch.equal(model(images), reference(images))
        set_r(model, 3)
        sparse = model(images)
        masks = dytune.keep_masks(model)
        with dytune.execution(model, "masked"):
            masked = model(images)
    assert (sparse - masked).abs().max().item() <= 1e-4
    assert masks[-1].shape[1] < 16  # the last dispatcher decided on merged tokens
    assert all(getattr(block, "_tome_qkv", None) is None for block in model.blocks)  # nothing held after forward
    assert model.tome.size[:, :model.num_prefix_tokens].eq(1).all()  # prefix tokens never merge
    merged_macs = dytune.count_macs(model, images)
    assert (merged_macs < dytune.count_macs(reference, images)).all()


def test_proportional_attention_needs_full_attention():
    with pytest.raises(ValueError, match="proportional attention"):
        apply_tome(converted(variant="attn"), r=2)
    with pytest.raises(ValueError, match="already"):
        apply_tome(apply_tome(tiny_vit(), r=1), r=1)
    with pytest.raises(ValueError, match="one per block"):
        set_r(apply_tome(tiny_vit(), r=1), [1, 2, 3])


def test_mlp_dispatch_macs_count_the_merged_tokens(images):
    model = apply_tome(converted(), r=3).eval()
    for gate in dispatchers(model):
        gate.logit_threshold.fill_(-1e4)  # keep every token
    sparse = dytune.count_macs(model, images)
    assert [b._mlp_input_tokens for b in model.blocks] == [14, 11]
    with dytune.execution(model, "complete"):
        complete = dytune.count_macs(model, images)
    assert torch.equal(sparse - complete, torch.full_like(sparse, (13 + 10) * 48))  # the dispatchers, on merged tokens


@pytest.mark.parametrize("key, variant", [("vit_cls", None), ("registers_layerscale", "mlp"),
                                          ("registers_layerscale", "attn_mlp"), ("vit_cls", "layer")])
def test_sizes_restart_in_the_first_block_for_every_entry_point(key, variant, images):
    """forward_features / forward_intermediates after a forward start from unmerged tokens, as model(x) does."""
    model = zoo_model(key) if variant is None else converted(key, variant=variant)
    apply_tome(model.eval(), r=3, proportional_attention=variant in (None, "mlp"))
    with torch.no_grad():
        logits = model(images)
        features = model.forward_features(images)
        assert torch.equal(model.forward_head(features), logits)
        assert torch.equal(model.forward_features(images), features)
        assert torch.equal(model(images), logits)
        model.forward_intermediates(images, indices=1)


def test_merging_cannot_follow_logits_only():
    model = dytune.logits_only(converted().eval())
    with pytest.raises(ValueError, match="logits_only"):
        apply_tome(model, r=2)
    dytune.logits_only(model, enabled=False)
    apply_tome(model, r=2)
    with pytest.raises(ValueError, match="token merging"):
        dytune.logits_only(model)


def test_dynamic_blocks_merge_through_their_hook_and_copies_merge_on_their_own(images):
    model = apply_tome(converted(variant="mlp").eval(), r=3)
    assert all(type(b) in BLOCK_VARIANTS.values() for b in model.blocks)  # no class swap
    copied = copy.deepcopy(model)
    with torch.no_grad():
        expected = model(images)
        assert torch.equal(copied(images), expected)
    assert copied.blocks[0].between_sub_blocks.state is copied.tome is not model.tome
    assert all(b.between_sub_blocks._qkv is None for m in (model, copied) for b in m.blocks)  # nothing held
    hooked = converted(variant="attn")
    hooked.blocks[1].between_sub_blocks = lambda block, x: x
    with pytest.raises(ValueError, match="block 1 already has a between_sub_blocks hook"):
        apply_tome(hooked, r=1, proportional_attention=False)
