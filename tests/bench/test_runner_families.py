"""`dytune bench --model` on the other backbone families with random weights, shrunk by `--timm-arg`: EVA-02 and DINOv3
(timm Eva: every dispatch variant) and Swin (MLP dispatch; the attention variants and ToMe are reported as refused
rows, not a crash). The full-size timing is docs/speed.md's."""
import json

import pytest

from dytune.cli import main

FAMILIES = {
    "eva02_base_patch14_224": (dict(img_size=28, depth=2, embed_dim=48, num_heads=3),
                               ("mlp", "attn", "attn_mlp", "layer")),
    "vit_base_patch16_dinov3": (dict(img_size=32, depth=2, embed_dim=48, num_heads=3),
                                ("mlp", "attn", "attn_mlp", "layer")),
    "swin_base_patch4_window7_224": (dict(img_size=64, window_size=2, embed_dim=16, depths=(1, 1, 1, 1),
                                          num_heads=(1, 2, 2, 4)), ("mlp",)),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_bench_runs_each_family_and_reports_what_it_refuses(tmp_path, name):
    timm_args, variants = FAMILIES[name]
    out = tmp_path / "bench.json"
    args = ["bench", "--model", name, "--num-classes", "5", "--batch-sizes", "1", "--repeats", "1", "--warmup", "0",
            "--calibration-images", "4", "--methods", "dense,adaptformer,dyt,tome", "--variants", "all",
            "--out", str(out)]
    for key, value in timm_args.items():
        args += ["--timm-arg", f"{key}={value}".replace(" ", "")]
    with pytest.warns(UserWarning) as caught:
        assert main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert sorted(r["method"] for r in rows) == sorted(["dense", "adaptformer", *(f"dyt-{v}" for v in variants)])
    for row in rows:
        assert row["gmacs"] > 0 and row["images_per_s"] > 0
        if row["method"].startswith("dyt"):
            assert 0 < row["keep_rate"] < 1 and row["max_abs_diff_vs_reference"] <= 1e-4  # sparse == masked at the timed keep rate
    messages = [str(w.message) for w in caught]
    assert any("no tome-r8 row: token merging is not supported" in m for m in messages)
    for variant in {"attn", "attn_mlp", "layer"} - set(variants):
        assert any(f"no dyt-{variant} row: DyTConfig.variant='{variant}' dispatches attention, but in timm_swin" in m
                   for m in messages)
