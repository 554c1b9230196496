import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import dytune
from tests.conftest import converted, tiny_vit


def _fresh_base(num_classes=5):
    """The pretrained backbone of `converted()` again, with a head of any size."""
    base = tiny_vit(num_classes=num_classes)
    backbone = {k: v for k, v in tiny_vit().state_dict().items() if not k.startswith("head")}
    base.load_state_dict(backbone, strict=False)
    return base


def _trained(variant="mlp", experts=1):
    model = converted(variant=variant, experts=experts)
    with torch.no_grad():
        model.head.weight.normal_()
    return model.eval()


@pytest.mark.parametrize("variant", dytune.VARIANTS)
@pytest.mark.parametrize("experts", [1, 3])
def test_save_then_load_gives_identical_logits(tmp_path, variant, experts, images):
    model = _trained(variant, experts)
    dytune.calibrate(model, images, 0.4)
    with torch.no_grad():
        expected = model(images)
    dytune.save_pretrained(model, tmp_path / "run")
    loaded = dytune.from_pretrained(tmp_path / "run", base=_fresh_base(num_classes=1000))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        assert torch.equal(loaded(images), expected)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]


def test_checkpoint_holds_only_trained_tensors(tmp_path):
    model = _trained()
    dytune.save_pretrained(model, tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["config"]["bottleneck"] == 8 and meta["num_classes"] == 5
    assert meta["backbone"]["architecture"] == "vit_tiny_patch16_224" and meta["timm_version"]
    assert all(("_adapter." in k or "_dispatcher." in k or k.startswith("head.")) for k in meta["tensors"])
    n = sum(np.prod(s) for s in meta["tensors"].values())
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < 4 * n + 10_000


def test_vit_base_bottleneck_8_checkpoint_is_a_few_hundred_kb(tmp_path):
    base = tiny_vit("vit_base_patch16_224", **dict(img_size=224, patch_size=16, embed_dim=768, depth=12,
                                                   num_heads=12, num_classes=100))
    dytune.save_pretrained(dytune.convert(base, dytune.DyTConfig(bottleneck=8)), tmp_path)
    size = (tmp_path / "adapter_model.safetensors").stat().st_size
    assert 100_000 < size < 1_000_000


def test_half_precision_checkpoint_is_half_the_size(tmp_path, images):
    model = _trained()
    dytune.save_pretrained(model, tmp_path / "fp32")
    dytune.save_pretrained(model, tmp_path / "fp16", dtype=torch.float16)
    full, half = ((tmp_path / d / "adapter_model.safetensors").stat().st_size for d in ("fp32", "fp16"))
    assert half < 0.6 * full
    loaded = dytune.from_pretrained(tmp_path / "fp16", base=_fresh_base())
    assert loaded.head.weight.dtype == torch.float32
    with dytune.execution(model, "complete"), dytune.execution(loaded, "complete"), torch.no_grad():
        assert torch.allclose(loaded(images), model(images), atol=1e-2)


def test_trainable_load_keeps_training_state(tmp_path):
    dytune.save_pretrained(_trained(), tmp_path)
    model = dytune.from_pretrained(tmp_path, base=tiny_vit(), is_trainable=True)
    assert model.training and model.head.weight.requires_grad


def test_mismatched_base_is_named(tmp_path):
    dytune.save_pretrained(_trained(), tmp_path)
    with pytest.raises(ValueError, match=r"embed_dim: saved 48, base 64"):
        dytune.from_pretrained(tmp_path, base=tiny_vit(embed_dim=64, num_heads=4))
    with pytest.raises(ValueError, match=r"depth: saved 2, base 3"):
        dytune.from_pretrained(tmp_path, base=tiny_vit(depth=3))


def test_tensors_that_do_not_fit_the_config_are_named(tmp_path):
    dytune.save_pretrained(_trained(), tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    meta["config"]["bottleneck"] = 16
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"shape mismatches.*blocks\.0\.mlp_adapter\.down\.weight: saved \(8, 48\), model \(16, 48\)"):
        dytune.from_pretrained(tmp_path, base=tiny_vit())
    meta["config"].update(bottleneck=8, variant="layer")
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"(?s)unexpected keys.*mlp_adapter.*missing keys.*layer_adapter"):
        dytune.from_pretrained(tmp_path, base=tiny_vit())


def test_missing_or_foreign_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        dytune.from_pretrained(tmp_path, base=tiny_vit())
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        dytune.from_pretrained(tmp_path, base=tiny_vit())
    (tmp_path / "adapter_config.json").write_text('{"format": "peft"}')
    with pytest.raises(ValueError, match="not a dytune adapter config"):
        dytune.from_pretrained(tmp_path, base=tiny_vit())


def test_save_rejects_unconverted_models(tmp_path):
    with pytest.raises(ValueError, match="dytune.convert"):
        dytune.save_pretrained(tiny_vit(), tmp_path)


def _in21k_state_dict(model):
    """A backbone saved the way the original jx in21k .pth is: pre_logits and a 21,843-class head."""
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    dim = model.embed_dim
    state.update({"pre_logits.fc.weight": torch.randn(dim, dim), "pre_logits.fc.bias": torch.zeros(dim),
                  "head.weight": torch.randn(21843, dim), "head.bias": torch.zeros(21843)})
    return state


def _assert_backbone_equal(model, source):
    own = model.state_dict()
    for k, v in source.state_dict().items():
        if not k.startswith("head"):
            assert torch.equal(own[k], v), k


@pytest.mark.parametrize("suffix", [".pth", ".bin", ".safetensors"])
def test_create_model_loads_local_backbone_files(tmp_path, suffix):
    source = tiny_vit(seed=7)
    state = _in21k_state_dict(source)
    path = tmp_path / f"jx_vit_tiny_in21k{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"model": state} if suffix == ".bin" else state, path)
    model = dytune.create_model("vit_tiny_patch16_224", checkpoint_path=path, num_classes=10,
                                config=dytune.DyTConfig(bottleneck=4), img_size=32, patch_size=8, embed_dim=48,
                                depth=2, num_heads=3)
    _assert_backbone_equal(model, source)
    assert model.head.out_features == 10 and model.blocks[0].mlp_adapter.down.out_features == 4


def _export_npz(model, path):
    """Write a timm ViT in Google's original .npz layout (the inverse of timm's _load_weights)."""
    c, heads = model.embed_dim, model.blocks[0].attn.num_heads
    n = lambda t: t.detach().numpy()  # noqa: E731
    w = {"embedding/kernel": n(model.patch_embed.proj.weight.permute(2, 3, 1, 0)),
         "embedding/bias": n(model.patch_embed.proj.bias), "cls": n(model.cls_token),
         "Transformer/posembed_input/pos_embedding": n(model.pos_embed),
         "Transformer/encoder_norm/scale": n(model.norm.weight), "Transformer/encoder_norm/bias": n(model.norm.bias),
         "pre_logits/kernel": np.zeros((c, c), np.float32), "head/kernel": np.zeros((c, 21843), np.float32),
         "head/bias": np.zeros(21843, np.float32)}
    for i, b in enumerate(model.blocks):
        p = f"Transformer/encoderblock_{i}/"
        mha = p + "MultiHeadDotProductAttention_1/"
        w[p + "LayerNorm_0/scale"], w[p + "LayerNorm_0/bias"] = n(b.norm1.weight), n(b.norm1.bias)
        w[p + "LayerNorm_2/scale"], w[p + "LayerNorm_2/bias"] = n(b.norm2.weight), n(b.norm2.bias)
        for part, weight, bias in zip(("query", "key", "value"), b.attn.qkv.weight.chunk(3), b.attn.qkv.bias.chunk(3)):
            w[mha + f"{part}/kernel"] = n(weight.t().reshape(c, heads, -1))
            w[mha + f"{part}/bias"] = n(bias.reshape(heads, -1))
        w[mha + "out/kernel"] = n(b.attn.proj.weight.reshape(c, heads, -1).permute(1, 2, 0))
        w[mha + "out/bias"] = n(b.attn.proj.bias)
        for r, fc in enumerate((b.mlp.fc1, b.mlp.fc2)):
            w[p + f"MlpBlock_3/Dense_{r}/kernel"], w[p + f"MlpBlock_3/Dense_{r}/bias"] = n(fc.weight.t()), n(fc.bias)
    np.savez(path, **w)


def test_create_model_loads_google_npz(tmp_path):
    source = tiny_vit(seed=7)
    _export_npz(source, tmp_path / "ViT-B_16.npz")
    model = dytune.create_model("vit_tiny_patch16_224", checkpoint_path=tmp_path / "ViT-B_16.npz", num_classes=10,
                                img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3)
    own = model.state_dict()
    for k, v in source.state_dict().items():
        if not k.startswith("head"):
            assert torch.allclose(own[k], v, atol=1e-6), k


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_never_unpickles_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": _Payload()}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        dytune.load_backbone_weights(tiny_vit(), path)


def test_backbone_file_errors_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        dytune.load_backbone_weights(tiny_vit(), tmp_path / "missing.pth")
    torch.save({"blocks.0.norm1.weight": torch.ones(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"(?s)other.pth does not fit.*missing keys \(\d+\): blocks.0.attn.proj.bias.*"
                                         r"shape mismatches \(1\): blocks.0.norm1.weight: file \(3,\), model \(48,\)"):
        dytune.load_backbone_weights(tiny_vit(), tmp_path / "other.pth")
    (tmp_path / "w.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported weight file"):
        dytune.load_backbone_weights(tiny_vit(), tmp_path / "w.onnx")


def test_a_video_model_saves_and_loads_like_an_image_model(tmp_path):
    import timm

    from dytune.tasks.video.model import VideoClassifier

    def fresh():
        torch.manual_seed(0)
        vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3,
                                num_classes=0)
        return vit

    model = VideoClassifier(dytune.convert(fresh(), dytune.DyTConfig(bottleneck=4)), num_classes=5, num_frames=3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.02)
    clips = torch.randn(2, 3, 3, 32, 32)
    expected = model.eval()(clips)
    dytune.save_pretrained(model, tmp_path / "video")
    loaded = dytune.from_pretrained(tmp_path / "video", base=VideoClassifier(fresh(), num_classes=5, num_frames=3))
    assert torch.allclose(loaded(clips), expected, atol=1e-6)
    with pytest.raises(ValueError, match="saved with 5 classes"):
        dytune.from_pretrained(tmp_path / "video", base=VideoClassifier(fresh(), num_classes=4, num_frames=3))
    with pytest.raises(ValueError, match="saved from a VideoClassifier"):
        dytune.from_pretrained(tmp_path / "video", base=fresh())


def test_trained_state_keeps_the_buffers_of_trained_modules():
    head = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    frozen = torch.nn.BatchNorm2d(4).requires_grad_(False)
    model = torch.nn.ModuleDict({"head": head, "frozen": frozen})
    keys = set(dytune.core.checkpoint.trained_state_dict(model))
    assert {"head.1.running_mean", "head.1.running_var", "head.1.num_batches_tracked", "head.1.weight"} <= keys
    assert not any(k.startswith("frozen.") for k in keys)


def test_calibrate_without_dispatchers_says_why(images):
    model = converted(layers=()).eval()  # AdaptFormer: dytune blocks, no dispatcher
    for per_layer in (False, True):
        with pytest.raises(ValueError, match="no token dispatchers"):
            dytune.calibrate(model, images, 0.5, per_layer=per_layer)
