import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import dytune
from tests.conftest import converted, countable


def _torch_macs(model, x):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def test_dense_vit_base_counts_17_58_gmacs():
    model = timm.create_model("vit_base_patch16_224").eval()
    macs = dytune.count_macs(model, torch.randn(1, 3, 224, 224))
    assert macs.item() == pytest.approx(17.58e9, rel=0.01)


@pytest.mark.parametrize("variant", dytune.VARIANTS)
@pytest.mark.parametrize("experts", [1, 3])
def test_matches_torch_counter_at_batch_1(variant, experts, images):
    model = countable(converted(variant=variant, experts=experts)).eval()
    x = images[:1]
    assert dytune.count_macs(model, x, norms=False).item() == _torch_macs(model, x)
    with dytune.execution(model, "complete"):
        assert dytune.count_macs(model, x, norms=False).item() == _torch_macs(model, x)


@pytest.mark.parametrize("key", ["vit_cls", "registers_layerscale", "avgpool_no_cls", "deit_distilled"])
def test_mlp_dispatch_matches_torch_counter_on_a_batch(key, images):
    model = countable(converted(key)).eval()
    macs = dytune.count_macs(model, images, norms=False)
    assert len(set(macs.tolist())) > 1, "images keep different numbers of tokens"
    assert macs.sum().item() == _torch_macs(model, images)


def test_counts_follow_kept_tokens(images):
    model = converted(variant="mlp").eval()
    with dytune.execution(model, "masked"):
        masked = dytune.count_macs(model, images)
    per_image = dytune.count_macs(model, images)
    assert torch.equal(masked, per_image)
    skipped = (2 * 16 - sum(b.keep_masks["mlp"].sum(1) for b in model.blocks)).long()
    with dytune.execution(model, "complete"):
        complete = dytune.count_macs(model, images)
    block = model.blocks[0]
    per_token = sum(m.in_features * m.out_features for m in block.mlp.modules() if isinstance(m, torch.nn.Linear))
    per_token += 5 * 48  # norm2
    dispatchers = 2 * 16 * 48
    assert torch.equal(complete - per_image, skipped * per_token - dispatchers)


def test_dense_timm_model_matches_torch_counter(images):
    model = countable(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2)).eval()
    assert dytune.count_macs(model, images, norms=False).sum().item() == _torch_macs(model, images)


@pytest.mark.parametrize("variant", dytune.VARIANTS)
def test_bucket_padding_is_not_counted(variant, images):
    model = converted(variant=variant).eval()
    bucketed = dytune.count_macs(model, images)
    with dytune.execution(model, "sparse", bucket=1):
        assert torch.equal(dytune.count_macs(model, images), bucketed)
    assert _torch_macs(countable(converted(variant=variant)).eval(), images) < _torch_macs(
        _unfused_bucketed(converted(variant=variant)).eval(), images)


def _unfused_bucketed(model):
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    return model
