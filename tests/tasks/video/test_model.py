"""The video model: per-frame backbone, attentive pooling, order (in)variance, every DyT variant on clips."""
import pytest
import timm
import torch

import dytune
from dytune.tasks.video.model import AttentivePool, FramePool, VideoClassifier
from tests.conftest import converted

T = 4


def tiny_backbone(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=2,
                             num_classes=0)


@pytest.fixture
def clips() -> torch.Tensor:
    return torch.randn(3, T, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def _randomize(module: torch.nn.Module, seed: int = 2) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def test_shapes_and_trainable_modules(clips):
    backbone = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=48,
                                 num_heads=2, num_classes=10)
    model = VideoClassifier(backbone, num_classes=7, num_frames=T).eval()
    assert isinstance(model.backbone.head, torch.nn.Identity)  # the backbone's own classifier is removed
    assert model.trainable_modules() == [model.pool, model.head]
    assert model.pool.num_heads == 2
    assert {"pool.query_token", "backbone.pos_embed", "backbone.cls_token"} <= model.no_weight_decay()
    assert model.no_weight_decay() <= {n for n, _ in model.named_parameters()}
    with torch.no_grad():
        logits = model(clips)
        tokens = model.frame_tokens(clips)
    assert logits.shape == (3, 7)
    assert tokens.shape == (3, T, 1 + 16, 48)


def test_views_give_per_view_logits(clips):
    model = VideoClassifier(tiny_backbone(), 5, T).eval()
    _randomize(model.pool)
    views = torch.stack([clips, clips.flip(-1), clips * 0.5], dim=1)  # [B, V=3, T, C, H, W]
    with torch.no_grad():
        per_view = model(views)
        each = torch.stack([model(views[:, v]) for v in range(3)], 1)
    assert per_view.shape == (3, 3, 5)
    assert torch.allclose(per_view, each, atol=1e-6)


def test_default_pooling_is_blind_to_frame_order(clips):
    model = VideoClassifier(tiny_backbone(), 5, T).eval()
    _randomize(model.pool)
    with torch.no_grad():
        forward, backward = model(clips), model(clips.flip(1))
        shuffled = model(clips[:, torch.tensor([2, 0, 3, 1])])
    assert torch.allclose(forward, backward, atol=1e-5)
    assert torch.allclose(forward, shuffled, atol=1e-5)


def test_temporal_embed_starts_at_zero_and_then_sees_order(clips):
    plain = VideoClassifier(tiny_backbone(), 5, T).eval()
    _randomize(plain.pool)
    timed = VideoClassifier(tiny_backbone(), 5, T, temporal_embed=True).eval()
    missing, unexpected = timed.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["pool.temporal_embed"] and not unexpected
    with torch.no_grad():
        assert torch.equal(timed(clips), plain(clips))  # zero-initialised: the paper's model
        timed.pool.temporal_embed.normal_(0, 1.0)
        forward, backward = timed(clips), timed(clips.flip(1))
    assert (forward - backward).abs().max() > 1e-3


def test_frame_pool_pools_each_frame_and_keeps_their_order(clips):
    model = VideoClassifier(tiny_backbone(), 5, T, pool="frames").eval()
    _randomize(model.pool)
    assert isinstance(model.pool, FramePool) and model.head.in_features == T * 48
    with torch.no_grad():
        tokens = model.frame_tokens(clips)
        pooled = model.pool(tokens)
        each = [AttentivePool.forward(model.pool, tokens[:, i:i + 1]) for i in range(T)]  # one frame at a time
        forward, backward = model(clips), model(clips.flip(1))
    assert pooled.shape == (3, T * 48)
    assert torch.allclose(pooled, torch.cat(each, dim=1), atol=1e-6)
    assert (forward - backward).abs().max() > 1e-3  # order-aware from the start
    with pytest.raises(ValueError, match=r"FramePool: expected tokens \[B, 4, N, 48\], got \(3, 3, 17, 48\)"):
        model.pool(tokens[:, :3])


def test_pool_starts_as_mean_of_values():
    pool = AttentivePool(48, num_heads=4)
    tokens = torch.randn(2, 3, 5, 48)
    with torch.no_grad():
        values = torch.nn.functional.linear(pool.norm_v(tokens.reshape(2, 15, 48)), pool.v.weight, pool.v_bias)
        assert torch.allclose(pool(tokens), pool.proj(values.mean(1)), atol=1e-5)


def test_bad_input_and_settings(clips):
    model = VideoClassifier(tiny_backbone(), 5, T)
    with pytest.raises(ValueError, match=r"expected clips \[B, 4, C, H, W\], got \(3, 3, 3, 32, 32\)"):
        model(clips[:, :3])
    with pytest.raises(ValueError, match="does not divide"):
        AttentivePool(48, num_heads=5)
    with pytest.raises(ValueError, match="needs num_frames"):
        AttentivePool(48, num_heads=4, temporal_embed=True)
    with pytest.raises(ValueError, match="temporal_embed has 4 frames, the input 3"):
        AttentivePool(48, num_heads=4, num_frames=4, temporal_embed=True)(torch.randn(1, 3, 5, 48))
    with pytest.raises(TypeError, match="timm VisionTransformer"):
        VideoClassifier(torch.nn.Linear(3, 3), 5, T)
    with pytest.raises(ValueError, match=r"pool='frame'; expected one of \('tokens', 'frames'\)"):
        VideoClassifier(tiny_backbone(), 5, T, pool="frame")
    with pytest.raises(ValueError, match="temporal_embed adds nothing to pool='frames'"):
        VideoClassifier(tiny_backbone(), 5, T, temporal_embed=True, pool="frames")


@pytest.mark.parametrize("variant,experts", [("mlp", 1), ("attn", 1), ("attn_mlp", 1), ("layer", 1), ("mlp", 4),
                                             ("attn_mlp", 4)])
def test_dyt_video_sparse_equals_masked(variant, experts, clips):
    model = VideoClassifier(converted("vit_cls", variant=variant, experts=experts), 6, T, temporal_embed=True).eval()
    _randomize(model.pool)
    with torch.no_grad():
        sparse = model(clips)
        masks = dytune.keep_masks(model)
        rates = dytune.keep_rates(model)
        with dytune.execution(model, "masked"):
            masked = model(clips)
    assert all(m.shape[0] == clips.shape[0] * T for m in masks)  # dispatch per frame
    assert 0.0 < sum(rates) / len(rates) < 1.0, "the test needs some tokens kept and some skipped"
    assert (sparse - masked).abs().max().item() <= 1e-4


def test_dyt_loss_trains_pool_head_and_adapters(clips):
    model = VideoClassifier(converted("vit_cls"), 6, T).train()
    loss, parts = dytune.DyTLoss(target_rate=0.5)(model, clips, torch.tensor([0, 3, 5]))
    loss.backward()
    assert torch.isfinite(loss) and 0.0 <= float(parts["keep_rate"]) <= 1.0
    assert model.pool.query_token.grad is not None and model.head.weight.grad is not None
    assert any(p.grad is not None for n, p in model.backbone.named_parameters() if "adapter" in n)
    assert all(p.grad is None for n, p in model.backbone.named_parameters() if n.startswith("patch_embed"))


def test_the_old_home_of_the_video_model_still_imports_with_a_deprecation_warning():
    import importlib
    import sys

    from dytune.tasks.video import VideoClassifier

    sys.modules.pop("dytune.modules.video", None)
    with pytest.warns(DeprecationWarning, match="moved to dytune.tasks.video.model"):
        old = importlib.import_module("dytune.modules.video")
    assert old.VideoClassifier is VideoClassifier
