"""Fixed-capacity execution: exactly the top-k patch tokens per image and dispatcher, static shapes."""
import pytest
import torch

import dytune
from dytune.core.calibrate import dispatchers
from dytune.core.modules.capacity import capacity_count, index_mask, top_k_index
from tests.conftest import converted

LAYOUTS = ["vit_cls", "registers_layerscale", "avgpool_no_cls"]


@pytest.mark.parametrize("experts", [1, 3])
@pytest.mark.parametrize("variant", ["mlp", "attn", "attn_mlp", "layer"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_capacity_equals_sparse_when_k_is_the_images_kept_count(layout, variant, experts):
    model = converted(layout, variant=variant, experts=experts).eval()
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), dytune.execution(model, "sparse", bucket=1):
        sparse, rates = model(image), dytune.keep_rates(model)
    dytune.set_capacity(model, rates)
    with torch.no_grad(), dytune.execution(model, "capacity"):
        capacity = model(image)
        assert dytune.keep_rates(model) == rates
    torch.testing.assert_close(capacity, sparse, rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", ["mlp", "layer"])
def test_every_image_keeps_exactly_its_top_k_and_every_prefix_token(variant, images):
    model = converted("registers_layerscale", variant=variant).eval()
    dytune.set_capacity(model, 0.4)
    with torch.no_grad(), dytune.execution(model, "capacity"):
        model(images)
    tokens = 16  # 32 x 32 images, 8 x 8 patches
    k = capacity_count(0.4, tokens)
    for mask in dytune.keep_masks(model):
        assert mask.shape == (7, tokens) and (mask.sum(dim=1) == k).all()
    scores = torch.randn(3, tokens)
    index = top_k_index(scores, 5, num_prefix_tokens=2)
    assert index[:, :2].tolist() == [[0, 1]] * 3
    kept = index_mask(index, 2, tokens)
    for row, mask in zip(scores, kept):
        assert set(mask.nonzero().squeeze(1).tolist()) == set(row.topk(5).indices.tolist())


def test_capacity_counts_round_to_the_nearest_token():
    assert [capacity_count(r, 16) for r in (0.0, 0.03, 0.5, 0.97, 1.0)] == [0, 0, 8, 16, 16]
    with pytest.raises(ValueError, match=r"capacity 1.5: expected a fraction"):
        capacity_count(1.5, 16)


@pytest.mark.parametrize("variant", ["mlp", "attn_mlp", "layer"])
def test_count_macs_counts_capacity_execution_exactly(variant):
    model = converted("vit_cls", variant=variant).eval()
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with dytune.execution(model, "sparse", bucket=1):
        sparse = dytune.count_macs(model, image)
        rates = dytune.keep_rates(model)
    dytune.set_capacity(model, rates)
    batch = torch.cat([image, torch.randn(4, 3, 32, 32)])
    with dytune.execution(model, "capacity"):
        macs = dytune.count_macs(model, batch)
    assert (macs == sparse[0]).all()  # the same k per layer for every image, whatever its content


def test_plan_capacity_from_the_trained_thresholds_or_a_budget_restores_the_thresholds(images):
    model = converted("vit_cls", variant="attn_mlp").eval()
    before = [g.logit_threshold.clone() for g in dispatchers(model)]
    with dytune.execution(model, "masked"):
        model(images)
        trained = dytune.keep_rates(model)
    assert dytune.plan_capacity(model, images) == trained
    budget = dytune.plan_capacity(model, images, keep_rate=0.3)
    assert sum(budget) / len(budget) == pytest.approx(0.3, abs=0.02)
    after = [g.logit_threshold for g in dispatchers(model)]
    assert all(torch.equal(a, b) for a, b in zip(before, after)) and not model.training


def test_capacity_mistakes_are_named(images):
    model = converted("vit_cls").eval()
    with pytest.raises(ValueError, match=r"has no capacity; set one with dytune.set_capacity"):
        with dytune.execution(model, "capacity"):
            model(images)
    with pytest.raises(ValueError, match=r"expected a fraction in \[0, 1\], or 2 of them"):
        dytune.set_capacity(model, [0.5])
    dytune.set_capacity(model, 0.5)
    assert dytune.capacities(model) == [0.5, 0.5]
    model.train()
    with pytest.raises(RuntimeError, match="'capacity' execution is for inference"):
        with dytune.execution(model, "capacity"):
            model(images)
    adaptformer = converted("vit_cls", layers=())
    with pytest.raises(ValueError, match="no token dispatchers"):
        dytune.plan_capacity(adaptformer, images)
