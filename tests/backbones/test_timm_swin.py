"""timm's Swin Transformer (v1) family on tiny random-weight models: four stages of 16x16, 8x8, 4x4 and 2x2 tokens
(patch 4, 64 x 64 images), windows of 3 so that the first stages pad to whole windows and shift every other block,
fixed and dynamic image sizes, non-square inputs."""
import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import dytune
from dytune.backbones import TimmSwin, backbone_for
from dytune.backbones.timm_swin import ShiftedWindows

from ..conftest import countable, randomize_adapters

TINY = dict(pretrained=False, img_size=64, patch_size=4, window_size=3, embed_dim=16, depths=(2, 2, 2, 2),
            num_heads=(1, 2, 4, 8), num_classes=5)
NAME = "swin_tiny_patch4_window7_224"
DIMS = (16, 32, 64, 128)

# key -> (timm overrides, input size): fixed square, fixed non-square, dynamic size fed a non-square image
SWIN_ZOO = {
    "square": ({}, (64, 64)),
    "fixed_nonsquare": (dict(img_size=(48, 72)), (48, 72)),
    "dynamic": (dict(dynamic_img_size=True), (40, 76)),
}


def swin(seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(NAME, **{**TINY, **overrides})
    with torch.no_grad():  # timm's 0.02 init leaves attention near uniform and the head near zero: sharpen both
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=module.in_features ** -0.5)
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.normal_(std=1.0)
    return model


def zoo(key: str, **overrides) -> torch.nn.Module:
    return swin(**{**SWIN_ZOO[key][0], **overrides})


def images(key: str, batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, *SWIN_ZOO[key][1], generator=torch.Generator().manual_seed(seed))


def converted(key: str = "square", **config) -> torch.nn.Module:
    model = dytune.convert(zoo(key), dytune.DyTConfig(**{"bottleneck": 8, **config}))
    randomize_adapters(model)
    return model.eval()


def _features(model, x, mode):
    with torch.no_grad(), dytune.execution(model, mode):
        return model.forward_features(x), model(x)


def test_protocol_answers():
    model = swin().eval()
    backbone = backbone_for(model)
    assert isinstance(backbone, TimmSwin) and backbone.family == "timm_swin"
    assert backbone.depth == 8 and backbone.num_stages == 4
    assert [list(backbone.stage_blocks(s)) for s in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [backbone.token_layout(i) for i in (0, 3, 4, 7)] == [(0, 16, 1, 0), (0, 32, 2, 1), (0, 64, 4, 2),
                                                                (0, 128, 8, 3)]
    assert [backbone.stride(s) for s in range(4)] == [(4, 4), (8, 8), (16, 16), (32, 32)]
    assert [backbone.grid((64, 64), s) for s in range(4)] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert [backbone.grid((40, 76), s) for s in range(4)] == [(10, 19), (5, 10), (3, 5), (2, 3)]  # merging pads
    assert not backbone.subset_attention(0) and backbone.pooling == "avg" and backbone.num_features == 128
    assert backbone.classifier_heads() == (model.head.fc,)
    assert model.load_state_dict(backbone.adapt_state_dict(model.state_dict())).missing_keys == []
    with pytest.raises(ValueError, match=r"stage=4: this SwinTransformer has stages 0\.\.3"):
        backbone.stride(4)
    with pytest.raises(IndexError, match=r"block 8: there are 8 blocks \(0\.\.7\)"):
        backbone.token_layout(8)
    # the geometry the shifted windows take from timm: stage 0 pads 16 -> 18 and shifts in its second block
    windows = backbone.block_parts(1).windows
    assert isinstance(windows, ShiftedWindows) and windows.shift_size == (1, 1) and windows.padded((16, 16)) == (18, 18)
    assert backbone.block_parts(6).windows.window_size == (2, 2)  # a 2x2 grid is one window, unshifted


@pytest.mark.parametrize("key", sorted(SWIN_ZOO))
def test_feature_maps_are_the_stage_outputs(key):
    model = converted(key)
    backbone = backbone_for(model)
    x = images(key, batch=2)
    with torch.no_grad():
        maps = backbone.feature_maps(x, [0, 1, 2, 3])
        rows, cols = backbone.grid(x.shape[-2:], 3)
        assert backbone.forward_tokens(x).shape == (2, rows * cols, 128)
    assert [tuple(m.shape) for m in maps] == [(2, DIMS[s], *backbone.grid(x.shape[-2:], s)) for s in range(4)]
    with torch.no_grad():
        assert torch.equal(backbone.feature_maps(x, [-1])[0], maps[3])
    with pytest.raises(ValueError, match=r"indices=\[4\]: expected stage indices .* 0\.\.3 \(its 8 blocks"):
        backbone.feature_maps(x, [4])
    backbone.prune([0, 1])
    assert backbone.num_stages == 2 and backbone.depth == 4
    with torch.no_grad():
        assert [m.shape[1] for m in backbone.feature_maps(x, [0, 1])] == [16, 32]


@pytest.mark.parametrize("key", sorted(SWIN_ZOO))
def test_conversion_keeps_state_dict_keys_and_outputs(key):
    model = zoo(key).eval()
    x = images(key)
    with torch.no_grad():
        dense = model(x)
        dense_maps = model.forward_intermediates(x, intermediates_only=True)
    keys = set(model.state_dict())
    dytune.convert(model, dytune.DyTConfig(bottleneck=8))
    assert keys <= set(model.state_dict())  # the windows part adds no key: its shift mask is not persistent
    assert not any(".windows." in k for k in model.state_dict())
    with torch.no_grad(), dytune.execution(model.eval(), "complete"):
        torch.testing.assert_close(model(x), dense, rtol=0, atol=1e-5)
        for got, want in zip(backbone_for(model).feature_maps(x, range(4)), dense_maps):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("key", sorted(SWIN_ZOO))
@pytest.mark.parametrize("experts", [1, 3])
@pytest.mark.parametrize("batch", [1, 7])
def test_sparse_matches_masked(key, experts, batch):
    model = converted(key, experts=experts)
    x = images(key, batch, seed=batch)
    masked, masked_logits = _features(model, x, "masked")
    sparse, sparse_logits = _features(model, x, "sparse")
    torch.testing.assert_close(sparse, masked, rtol=0, atol=1e-4)
    torch.testing.assert_close(sparse_logits, masked_logits, rtol=0, atol=1e-4)
    rates = dytune.keep_rates(model)
    assert len(rates) == 8 and all(0 < r < 1 for r in rates[:4]), rates  # the last stages have few tokens
    backbone = backbone_for(model)
    for i, block in enumerate(backbone.blocks):  # every token of the stage's grid is dispatched
        rows, cols = backbone.grid(x.shape[-2:], backbone.token_layout(i).stage)
        assert block.keep_masks["mlp"].shape == (batch, rows * cols) and block.num_prefix_tokens == 0


def test_skipped_tokens_skip_the_mlp_only():
    """Control: a block whose MLP dispatcher skips everything still runs attention and the adapter on every token."""
    model = converted("square")
    block = backbone_for(model).blocks[1]
    block.mlp_dispatcher.set_threshold(1 - 1e-6)
    x = torch.randn(2, 16, 16, 16)
    with torch.no_grad():
        out = block(x)
        attended = x + block.windows(block.attn, block.norm1(x))
        torch.testing.assert_close(out, attended + block.mlp_adapter(attended), rtol=0, atol=1e-5)
    assert block.keep_masks["mlp"].sum() == 0


def test_capacity_one_equals_complete():
    model = converted("dynamic")
    x = images("dynamic", 7)
    complete, _ = _features(model, x, "complete")
    dytune.set_capacity(model, 1.0)
    torch.testing.assert_close(_features(model, x, "capacity")[0], complete, rtol=0, atol=1e-4)


def _torch_macs(model, x):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("key", sorted(SWIN_ZOO))
def test_dense_macs_match_torch_counter(key):
    model = countable(zoo(key)).eval()
    x = images(key)
    assert dytune.count_macs(model, x, norms=False).sum().item() == _torch_macs(model, x)


@pytest.mark.parametrize("key", sorted(SWIN_ZOO))
@pytest.mark.parametrize("experts", [1, 3])
def test_dynamic_macs_match_torch_counter(key, experts):
    model = countable(converted(key, experts=experts))
    x = images(key, 7)
    macs = dytune.count_macs(model, x, norms=False)
    assert macs.sum().item() == _torch_macs(model, x)
    assert len(set(macs.tolist())) > 1  # per image: the kept tokens differ
    with dytune.execution(model, "complete"):
        dense = dytune.count_macs(model, x[:1], norms=False).item()
        assert dense == _torch_macs(model, x[:1])
    dytune.calibrate(model, x, keep_rate=0.3)
    assert dytune.count_macs(model, x, norms=False).sum().item() == _torch_macs(model, x) < 7 * dense


def test_save_and_load_pretrained(tmp_path):
    model = converted("square", experts=3)
    x = images("square")
    with torch.no_grad():
        before = model(x)
    dytune.save_pretrained(model, tmp_path / "swin")
    loaded = dytune.from_pretrained(tmp_path / "swin", swin())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), before, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="window_size"):
        dytune.from_pretrained(tmp_path / "swin", swin(window_size=4))


def test_create_model_with_a_local_weight_file(tmp_path):
    torch.save(swin().state_dict(), tmp_path / "w.pth")
    model = dytune.create_model(NAME, checkpoint_path=tmp_path / "w.pth", num_classes=5,
                                config=dytune.DyTConfig(bottleneck=8),
                                **{k: v for k, v in TINY.items() if k not in ("pretrained", "num_classes")})
    assert isinstance(backbone_for(model), TimmSwin)
    torch.testing.assert_close(model.layers[2].blocks[1].attn.qkv.weight, swin().layers[2].blocks[1].attn.qkv.weight)


def test_swin_base_converts_with_the_default_config():
    model = dytune.convert(timm.create_model("swin_base_patch4_window7_224", pretrained=False), dytune.DyTConfig())
    backbone = backbone_for(model)
    assert backbone.depth == 24 and [backbone.token_layout(b[0]).dim for b in map(backbone.stage_blocks, range(4))] \
        == [128, 256, 512, 1024]
    assert model.layers[2].blocks[17].mlp_adapter.down.out_features == 64
    trainable = {n.split(".")[-2] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"down", "up", "proj", "fc"}  # adapters, dispatchers, classifier


@pytest.mark.parametrize("variant", ["attn", "attn_mlp", "layer"])
def test_attention_dispatch_is_refused(variant):
    with pytest.raises(ValueError, match=f"variant='{variant}' dispatches attention, but in timm_swin its "
                                         f"attention runs within \\(shifted\\) windows.*use variant='mlp'"):
        dytune.convert(swin(), dytune.DyTConfig(variant=variant))


def test_refusals_say_why():
    from dytune.core.tome import apply_tome

    model = converted("square")
    with pytest.raises(ValueError, match="token merging is not supported on timm_swin backbones: .*windows"):
        apply_tome(model)
    with pytest.raises(ValueError, match="logits_only: unsupported model: global_pool='avg'.*no class token"):
        dytune.logits_only(model)
    with pytest.raises(ValueError, match=r"takes 64x64 images, got 48x72"):
        model(torch.randn(1, 3, 48, 72))
    with pytest.raises(TypeError, match=r"dytune.convert: dytune supports timm VisionTransformer .*timm Eva .*"
                                        r"timm SwinTransformer .*; got ConvNeXt"):
        dytune.convert(timm.create_model("convnext_atto", pretrained=False))
    with pytest.raises(TypeError, match=r"SwinTransformerV2 .*normalise.*; got SwinTransformerV2"):
        dytune.convert(timm.create_model("swinv2_tiny_window8_256", pretrained=False, embed_dim=16,
                                         depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), img_size=64))


def test_calibrate_and_skip_maps_per_stage(tmp_path):
    from dytune.viz import _keep_panels, plot_skip_maps

    model = converted("dynamic")
    x = images("dynamic", 4)
    dytune.calibrate(model, x, keep_rate=0.25, per_layer=True)
    with torch.no_grad():
        model(x)
    assert dytune.keep_rates(model) == pytest.approx([0.25] * 8, abs=0.1)
    panels = _keep_panels(model, x.shape[-2:])
    assert [(p.stride, p.grid) for p in panels[::2]] == [((4, 4), (10, 19)), ((8, 8), (5, 10)),
                                                         ((16, 16), (3, 5)), ((32, 32), (2, 3))]
    plot_skip_maps(model, x[:2], tmp_path / "skip.png")
    assert (tmp_path / "skip.png").stat().st_size > 0


def test_task_models_around_a_swin():
    from dytune.tasks.segmentation.model import Segmenter
    from dytune.tasks.video.model import VideoClassifier

    video = VideoClassifier(converted("square"), num_classes=3, num_frames=2).eval()
    with torch.no_grad():
        assert video(torch.randn(2, 2, 3, 64, 64)).shape == (2, 3)
    seg = Segmenter(swin(num_classes=0), num_classes=3, channels=16).eval()  # its stages are the pyramid
    with torch.no_grad():
        assert seg(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_baseline_methods_on_a_swin():
    from dytune.methods.lora import add_lora
    from dytune.methods.vpt import add_deep_prompts

    model = add_lora(swin()).eval()
    with torch.no_grad():
        assert model(images("square")).shape == (3, 5)
    with pytest.raises(ValueError, match="add_deep_prompts: a timm_swin backbone has 4 stages .* windows"):
        add_deep_prompts(swin())


def test_a_training_step_reaches_adapters_and_dispatchers():
    model = converted("dynamic", experts=3).train()
    loss, parts = dytune.DyTLoss(target_rate=0.5)(model, images("dynamic", 4), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert 0 < parts["keep_rate"] < 1
    for name, p in model.named_parameters():
        if p.requires_grad and ("adapter" in name or "dispatcher" in name or name.startswith("head")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
