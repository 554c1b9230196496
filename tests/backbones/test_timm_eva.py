"""timm's Eva family on tiny random-weight models: EVA-02 (rope, SwiGLU), DINOv3 (registers, LayerScale, dynamic
size), Perception Encoder (AttentionRope, attention pooling), mixed per-head rope and EVA-01 (no rope)."""
import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import dytune
from dytune.backbones import BorrowedScale, TimmEva, backbone_for
from dytune.core.modules import tokens
from dytune.core.tome import apply_tome

from ..conftest import countable, randomize_adapters

TINY = dict(pretrained=False, img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3, num_classes=5)

# key -> (timm name, overrides, prefix tokens)
EVA_ZOO = {
    "eva02": ("eva02_tiny_patch14_224", {}, 1),
    "dinov3": ("vit_small_patch16_dinov3", {}, 5),
    "pe_core": ("vit_pe_core_tiny_patch16_384", {}, 1),
    "rope_mixed": ("vit_base_patch16_rope_mixed_224", {}, 1),
    "eva01_no_rope": ("eva_giant_patch14_224", {}, 1),
}


def eva(key: str, seed: int = 0, **overrides) -> torch.nn.Module:
    name, extra, _ = EVA_ZOO[key]
    torch.manual_seed(seed)
    model = timm.create_model(name, **{**TINY, **extra, **overrides})
    with torch.no_grad():  # LayerScale starts at 1e-5, the head at 1e-3 scale, attention near uniform: sharpen all
        for block in model.blocks:
            for proj in (block.attn.qkv, block.attn.q_proj, block.attn.k_proj):
                if proj is not None:
                    proj.weight.mul_(4)
            for gamma in (block.gamma_1, block.gamma_2):
                if gamma is not None:
                    gamma.uniform_(0.5, 1.0)
        if isinstance(model.head, torch.nn.Linear):
            torch.nn.init.normal_(model.head.weight, std=0.5)
    return model


def converted(key: str, **config) -> torch.nn.Module:
    model = dytune.convert(eva(key), dytune.DyTConfig(**{"bottleneck": 8, **config}))
    randomize_adapters(model)
    return model.eval()


def _features(model, x, mode):
    with torch.no_grad(), dytune.execution(model, mode):
        return model.forward_features(x), model(x)


@pytest.mark.parametrize("key", sorted(EVA_ZOO))
def test_protocol_answers(key):
    model = eva(key).eval()
    backbone = backbone_for(model)
    prefix = EVA_ZOO[key][2]
    assert isinstance(backbone, TimmEva) and backbone.family == "timm_eva"
    assert backbone.token_layout(1) == (prefix, 48, 3, 0)
    assert backbone.position_dependent_attention(0) is (key != "eva01_no_rope") and backbone.subset_attention(0)
    assert backbone.grid((32, 32)) == (4, 4) and backbone.stride() == (8, 8)
    with torch.no_grad():
        assert backbone.forward_tokens(torch.randn(2, 3, 32, 32)).shape == (2, prefix + 16, 48)
        assert [m.shape for m in backbone.feature_maps(torch.randn(2, 3, 32, 32), [0, 1])] == [(2, 48, 4, 4)] * 2
    assert backbone.classifier_heads() == (model.head,)
    assert model.load_state_dict(backbone.adapt_state_dict(model.state_dict())).missing_keys == []
    with pytest.raises(ValueError, match="one stage"):
        backbone.stride(1)


@pytest.mark.parametrize("key", sorted(EVA_ZOO))
def test_conversion_keeps_state_dict_keys_and_outputs(key):
    model = eva(key).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        dense = model(x)
    keys = set(model.state_dict())
    dytune.convert(model, dytune.DyTConfig(bottleneck=8))
    assert keys <= set(model.state_dict())  # gamma_1/gamma_2 stay where the EvaBlock had them
    with torch.no_grad(), dytune.execution(model.eval(), "complete"):
        torch.testing.assert_close(model(x), dense, rtol=0, atol=1e-5)
    if key == "dinov3":
        assert isinstance(model.blocks[0].ls1, BorrowedScale) and model.blocks[0].ls1.gamma is model.blocks[0].gamma_1


@pytest.mark.parametrize("key", sorted(EVA_ZOO))
@pytest.mark.parametrize("variant", dytune.VARIANTS)
@pytest.mark.parametrize("experts", [1, 3])
@pytest.mark.parametrize("batch", [1, 7])
def test_sparse_matches_masked(key, variant, experts, batch):
    model = converted(key, variant=variant, experts=experts)
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    masked, masked_logits = _features(model, x, "masked")
    sparse, sparse_logits = _features(model, x, "sparse")
    torch.testing.assert_close(sparse, masked, rtol=0, atol=1e-4)
    torch.testing.assert_close(sparse_logits, masked_logits, rtol=0, atol=1e-4)
    rates = dytune.keep_rates(model)
    assert all(0 < r < 1 for r in rates), rates
    prefix = EVA_ZOO[key][2]
    for block in model.blocks:  # keep masks cover patch tokens only: prefix and registers are always computed
        assert all(m.shape == (batch, 16) for m in block.keep_masks.values())
        assert block.num_prefix_tokens == prefix


@pytest.mark.parametrize("variant", ["attn", "layer"])
def test_non_square_dynamic_size(variant):
    model = converted("dinov3", variant=variant, experts=3)
    x = torch.randn(7, 3, 24, 40)
    assert backbone_for(model).grid((24, 40)) == (3, 5)
    masked, _ = _features(model, x, "masked")
    sparse, _ = _features(model, x, "sparse")
    assert sparse.shape == (7, 5 + 15, 48)
    torch.testing.assert_close(sparse, masked, rtol=0, atol=1e-4)


def test_non_square_fixed_size():
    model = dytune.convert(eva("eva02", img_size=(24, 40)), dytune.DyTConfig(bottleneck=8, variant="attn_mlp"))
    randomize_adapters(model)
    x = torch.randn(7, 3, 24, 40)
    torch.testing.assert_close(_features(model.eval(), x, "sparse")[0], _features(model, x, "masked")[0],
                               rtol=0, atol=1e-4)


def test_rope_rows_follow_the_kept_tokens(monkeypatch):
    """Control: taking the rope rows by rank instead of by position breaks sparse == masked."""
    model = converted("eva02", variant="attn")
    x = torch.randn(7, 3, 32, 32)
    masked, _ = _features(model, x, "masked")
    monkeypatch.setattr("dytune.core.modules.blocks.gather_positions", lambda rope, positions, p: tokens.gather_positions(
        rope, torch.arange(positions.shape[1]).expand_as(positions), p))
    wrong, _ = _features(model, x, "sparse")
    assert (wrong - masked).abs().max() > 1e-2


@pytest.mark.parametrize("variant", dytune.VARIANTS)
def test_capacity_gathers_rope_rows_by_position(variant):
    """Capacity 1.0 gathers every token in top-k order (not positional): it must equal complete execution."""
    model = converted("dinov3", variant=variant)
    x = torch.randn(7, 3, 32, 32)
    complete, _ = _features(model, x, "complete")
    dytune.set_capacity(model, 1.0)
    capacity, _ = _features(model, x, "capacity")
    torch.testing.assert_close(capacity, complete, rtol=0, atol=1e-4)
    dytune.set_capacity(model, 0.5)
    with torch.no_grad(), dytune.execution(model, "capacity"):
        assert model.forward_features(x).shape == (7, 21, 48)
    assert all(m.sum(1).eq(8).all() for b in model.blocks for m in b.keep_masks.values())


def _torch_macs(model, x):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("key", sorted(EVA_ZOO))
def test_dense_macs_match_torch_counter(key):
    model = countable(eva(key)).eval().requires_grad_(False)  # the counter's module tracker trips on PE's grads
    x = torch.randn(3, 3, 32, 32)
    assert dytune.count_macs(model, x, norms=False).sum().item() == _torch_macs(model, x)


@pytest.mark.parametrize("key", sorted(EVA_ZOO))
@pytest.mark.parametrize("variant", dytune.VARIANTS)
def test_dynamic_macs_match_torch_counter(key, variant):
    model = countable(converted(key, variant=variant, experts=3 if variant == "mlp" else 1))
    # packed attention computes every image at the batch's largest kept count, which only MACs per image exclude
    x = torch.randn(7 if variant == "mlp" else 1, 3, 32, 32)
    assert dytune.count_macs(model, x, norms=False).sum().item() == _torch_macs(model, x)
    with dytune.execution(model, "complete"):
        assert dytune.count_macs(model, x[:1], norms=False).item() == _torch_macs(model, x[:1])


def test_separate_qkv_projections_are_counted():
    model = countable(dytune.convert(eva("eva02", qkv_fused=False), dytune.DyTConfig(bottleneck=8, variant="attn")))
    randomize_adapters(model.eval())
    x = torch.randn(1, 3, 32, 32)
    assert dytune.count_macs(model, x, norms=False).item() == _torch_macs(model, x)


def test_save_and_load_pretrained(tmp_path):
    model = converted("dinov3", variant="attn_mlp", experts=3)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    dytune.save_pretrained(model, tmp_path / "eva")
    loaded = dytune.from_pretrained(tmp_path / "eva", eva("dinov3"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), before, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="rope"):
        dytune.from_pretrained(tmp_path / "eva", eva("eva02", num_reg_tokens=4, init_values=1.0))


def test_create_model_with_a_local_weight_file(tmp_path):
    torch.save(eva("eva02").state_dict(), tmp_path / "w.pth")
    model = dytune.create_model("eva02_tiny_patch14_224", checkpoint_path=tmp_path / "w.pth", num_classes=5,
                                config=dytune.DyTConfig(bottleneck=8),
                                **{k: v for k, v in TINY.items() if k not in ("pretrained", "num_classes")})
    assert isinstance(backbone_for(model), TimmEva)
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, eva("eva02").blocks[0].attn.qkv.weight)


def test_refusals_say_why():
    model = converted("dinov3", variant="mlp")
    with pytest.raises(ValueError, match="token merging is not supported on timm_eva backbones: .*rotary"):
        apply_tome(model)
    with pytest.raises(ValueError, match="logits_only: unsupported model: global_pool='avg'.*EvaAttention"):
        dytune.logits_only(model)
    with pytest.raises(TypeError, match="block 0 is a EvaBlockPostNorm; .*use_post_norm=True"):
        dytune.convert(timm.create_model("eva02_tiny_patch14_224", **TINY, use_post_norm=True))
    with pytest.raises(ValueError, match=r"takes 32x32 images, got 24x40"):
        converted("eva02")(torch.randn(1, 3, 24, 40))


def test_calibrate_and_skip_maps(tmp_path):
    model = converted("dinov3", variant="attn_mlp")
    x = torch.randn(8, 3, 24, 40)
    dytune.calibrate(model, x, keep_rate=0.25, per_layer=True)
    with torch.no_grad():
        model(x)
    assert dytune.keep_rates(model) == pytest.approx([0.25] * 4, abs=0.05)
    from dytune.viz import plot_skip_maps

    plot_skip_maps(model, x[:2], tmp_path / "skip.png")
    assert (tmp_path / "skip.png").stat().st_size > 0


def test_task_models_around_an_eva():
    from dytune.tasks.segmentation.model import Segmenter
    from dytune.tasks.video.model import VideoClassifier

    backbone = dytune.convert(eva("eva02", depth=4, num_classes=0), dytune.DyTConfig(bottleneck=8, variant="attn"))
    seg = Segmenter(backbone, num_classes=3, out_indices=(0, 1, 2, 3), channels=16,
                    aux_channels=8, aux_index=0).eval()
    with torch.no_grad():
        assert seg(torch.randn(2, 3, 32, 32)).shape[:2] == (2, 3)
    video = VideoClassifier(converted("dinov3"), num_classes=3, num_frames=2).eval()
    with torch.no_grad():
        assert video(torch.randn(2, 2, 3, 32, 32)).shape == (2, 3)
