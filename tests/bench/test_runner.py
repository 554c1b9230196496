"""What `dytune bench` times is correct: same logits as the reference paths, calibrated keep rates, memory, timing."""
import json

import pytest
import torch

import dytune
from dytune.bench import Timing, time_interleaved
from dytune.cli.bench import format_table
from dytune.bench.accuracy import accuracy_vs_budget
from dytune.bench.memory import peak_memory_bytes
from dytune.bench.official import official_state_dict
from dytune.bench.runner import BenchSettings, build_models, images_for, run_benchmark
from dytune.core.calibrate import dispatchers
from dytune.cli import main
from dytune.core.modules.adapter import build_adapter
from dytune.core.modules.blocks import BLOCK_VARIANTS, add_adapter_
from tests.conftest import converted, randomize_adapters

TINY_ARGS = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3)


def tiny_settings(**kw):
    kw = {"model": "vit_tiny_patch16_224", "timm_kwargs": TINY_ARGS, "num_classes": 5, "bottleneck": 4, "tome_r": 2,
          "calibration_images": 16, **kw}
    return BenchSettings(**kw)


def test_timed_models_give_the_reference_logits():
    settings = tiny_settings(methods=("dense", "adaptformer", "dyt", "dyt+logits", "tome", "dyt+tome"),
                             variants=dytune.VARIANTS, proportional_attention=False)
    models = build_models(settings, torch.device("cpu"))
    assert set(models) == {"dense", "adaptformer", "tome-r2", *(f"dyt-{v}" for v in dytune.VARIANTS),
                           *(f"dyt-{v}+logits-only" for v in dytune.VARIANTS),
                           *(f"dyt-{v}+tome-r2" for v in dytune.VARIANTS)}
    dense = models["dense"].model
    images = images_for(dense, 5, 7, torch.device("cpu"))
    with torch.no_grad():
        reference = dense(images)
        for name, entry in models.items():
            if name.startswith("dyt"):
                randomize_adapters(entry.model)  # the timed path must match the masked path with trained-like weights
                assert (entry.model(images) - entry.reference(images)).abs().max() <= 1e-4, name
        assert torch.equal(models["adaptformer"].model(images), reference)  # zero-initialised adapters
        assert torch.equal(models["tome-r2"].model.blocks[0].mlp.fc1.weight, dense.blocks[0].mlp.fc1.weight)


@pytest.mark.parametrize("variant, per_layer", [(v, True) for v in dytune.VARIANTS] + [("attn_mlp", False)])
def test_calibrate_reaches_the_keep_rate(variant, per_layer, images):
    model = converted(variant=variant).eval()
    rates = dytune.calibrate(model, images, 0.35, per_layer=per_layer)
    assert abs(sum(rates) / len(rates) - 0.35) <= 0.02
    with torch.no_grad():
        model(images)  # the sparse path keeps the same tokens
    assert abs(sum(dytune.keep_rates(model)) / len(rates) - 0.35) <= 0.02


@pytest.mark.parametrize("per_layer", [True, False])
def test_calibrate_handles_extreme_logits_and_the_end_points(per_layer, images):
    """Trained dispatchers can score far beyond +-30 (a layer that learned to skip everything); rates 1 and 0 mean
    every token and none, on any image."""
    model = converted(variant="attn_mlp").eval()
    with torch.no_grad():
        for gate in dispatchers(model):
            gate.proj.weight.mul_(1e4)
    for rate in (0.0, 0.4, 1.0):
        rates = dytune.calibrate(model, images, rate, per_layer=per_layer)
        assert abs(sum(rates) / len(rates) - rate) <= 0.02, rate
    with torch.no_grad():
        model(torch.randn_like(images) * 3)
    assert dytune.keep_rates(model) == [1.0] * len(rates)


def test_adapter_accumulated_in_place_equals_the_sum(images):
    x = torch.randn(3, 17, 48)
    for experts in (1, 3):
        adapter = build_adapter(48, 8, experts, scale=0.7, dropout=0.1).eval()
        for p in adapter.parameters():
            torch.nn.init.normal_(p, std=0.1)
        with torch.no_grad():
            expected = x + adapter(x)
            assert torch.allclose(add_adapter_(x.clone(), adapter), expected, atol=1e-6)


def test_official_weights_fold_the_threshold_into_the_bias(images):
    model = converted(variant="mlp").eval()
    dytune.calibrate(model, images, 0.4)
    state = official_state_dict(model)
    gate = model.blocks[1].mlp_dispatcher
    bias = state["blocks.1.mlp_token_select.mlp_head.bias"]
    assert torch.allclose(bias, gate.proj.bias - gate.logit_threshold)
    assert torch.equal(state["blocks.0.adaptmlp.up_proj.weight"], model.blocks[0].mlp_adapter.up.weight)
    assert not any("mlp_dispatcher" in k or "mlp_adapter" in k for k in state)
    with pytest.raises(ValueError, match="MLP dispatch"):
        from dytune.bench.official import _check_mappable
        _check_mappable(converted(variant="attn"))


def test_peak_memory_counts_live_tensors():
    def fn(x):
        a = x * 2  # 4 KB, freed after b exists
        b = a + 1
        del a
        c = b * 3
        return c.sum()
    x = torch.zeros(1024)
    peak = peak_memory_bytes(fn, x, torch.nn.Linear(1, 1))
    assert 8 * 1024 <= peak <= 8 * 1024 + 64  # two 4 KB tensors at most at once (+ the scalar)


@pytest.mark.parametrize("variant", dytune.VARIANTS)
def test_sparse_peak_memory_is_not_above_dense(variant):
    """With and without ToMe; beyond the dense peak only the keep masks that each block records for `keep_rates`."""
    settings = tiny_settings(methods=("dense", "dyt", "dyt+tome"), variants=(variant,), proportional_attention=False)
    models = build_models(settings, torch.device("cpu"))
    images = images_for(models["dense"].model, 8, 0, torch.device("cpu"))
    dense = peak_memory_bytes(models["dense"].model, images, models["dense"].model)
    for name in (f"dyt-{variant}", f"dyt-{variant}+tome-r2"):
        model = models[name].model
        peak = peak_memory_bytes(model, images, model)
        masks = sum(m.numel() * m.element_size() for m in dytune.keep_masks(model))
        assert peak <= dense + masks, name


def test_time_interleaved_times_every_function():
    calls = []
    timings = time_interleaved({"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")},
                               torch.zeros(4, 1), warmup=1, repeats=3)
    assert calls == ["a", "b"] * 4
    assert {k: len(t.times_ms) for k, t in timings.items()} == {"a": 3, "b": 3} and timings["a"].batch == 4


def test_speed_ups_are_taken_round_by_round_and_a_wide_spread_is_flagged():
    dense, fast = Timing(batch=4, times_ms=[10.0, 20.0, 10.0]), Timing(batch=4, times_ms=[5.0, 10.0, 8.0])
    assert fast.speedups_over(dense) == [2.0, 2.0, 1.25]
    assert fast.speedup_over(dense) == pytest.approx(10.0 / 8.0)
    assert fast.speedup_spread(dense) == pytest.approx(0.375 / 2.0)
    row = dict(method="dyt-mlp", precision="fp32", batch=4, gmacs=1.0, median_ms=8.0, spread_ms=2.5,
               images_per_s=500.0, peak_memory_mb=1.0, speedup=1.25, speedup_spread=0.1875)
    result = dict(device="cpu", cpu="x86", threads=2, torch="t", timm="t", dytune="d", repeats=3, rows=[row])
    assert "warning: the speed-up of dyt-mlp at batch 4 varied by ±18.8 %" in format_table(result)
    assert "warning" not in format_table({**result, "rows": [{**row, "speedup_spread": 0.02}]})


def test_logits_only_row_is_skipped_with_a_warning_where_unsupported():
    settings = BenchSettings(model="vit_tiny_patch16_224", num_classes=5, bottleneck=4, methods=("dense", "dyt+logits"),
                             timm_kwargs={**TINY_ARGS, "class_token": False, "global_pool": "avg"})
    with pytest.warns(UserWarning, match="no dyt-mlp\\+logits-only row: .*global_pool='avg'"):
        models = build_models(settings, torch.device("cpu"))
    assert set(models) == {"dense"}


@pytest.mark.slow
def test_run_benchmark_rows():
    result = run_benchmark(tiny_settings(methods=("dense", "dyt", "dyt+tome")), batch_sizes=(3,),
                           precisions=("fp32", "bf16"), warmup=0, repeats=1)
    rows = result["rows"]
    assert len(rows) == 2 * 3
    dense = next(r for r in rows if r["method"] == "dense")
    dyt = next(r for r in rows if r["method"] == "dyt-mlp" and r["batch"] == 3)
    assert dense["speedup"] == 1.0 and dense["flops_ideal_speedup"] == 1.0
    assert dyt["flops_ideal_speedup"] == pytest.approx(dense["gmacs"] / dyt["gmacs"])
    assert dense["speedup_spread"] == 0.0 and dyt["speedup_spread"] >= 0.0
    assert abs(dyt["keep_rate"] - 0.5) < 0.15 and dyt["max_abs_diff_vs_reference"] <= 1e-4
    assert all(r["peak_memory_mb"] > 0 and r["images_per_s"] > 0 for r in rows)
    assert result["torch"] == torch.__version__ and result["device"] == "cpu"


@pytest.mark.slow
def test_compiled_models_give_the_eager_logits():
    """torch.compile traces the sparse path (graph breaks at the data-dependent token counts) and keeps the logits,
    also with ToMe, where the sequence length changes between blocks."""
    torch._dynamo.reset()
    result = run_benchmark(tiny_settings(methods=("dyt", "dyt+logits", "dyt+tome")), batch_sizes=(2,), warmup=0,
                           repeats=1, compile=True)
    assert {r["method"] for r in result["rows"]} == {"dyt-mlp", "dyt-mlp+logits-only", "dyt-mlp+tome-r2"}
    assert all(r["compile"] and r["max_abs_diff_compiled_vs_eager"] <= 1e-4 for r in result["rows"])


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--model", "vit_tiny_patch16_224", "--num-classes", "5", "--variants", "layer",
            "--batch-sizes", "2", "--repeats", "1", "--warmup", "0", "--tome-r", "2", "--calibration-images", "8",
            "--no-proportional-attention", "--out", str(out)]
    for key, value in TINY_ARGS.items():
        args += ["--timm-arg", f"{key}={value}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    names = {r["method"] for r in result["rows"]}
    assert names == {"dense", "adaptformer", "dyt-layer", "dyt-layer+logits-only", "tome-r2", "dyt-layer+tome-r2"}
    assert "dyt-layer+tome-r2" in printed and "speed-up" in printed


def test_accuracy_vs_budget_cli_and_function(tmp_path):
    model = converted().eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(40, 3, 32, 32, generator=gen)
    with torch.no_grad(), dytune.execution(model, "complete"):
        labels = model(images).argmax(-1)  # the complete model's predictions: keep rate 1 reproduces them
    before = [g.logit_threshold.clone() for g in dispatchers(model)]
    rows = accuracy_vs_budget(model, [(images[8:24], labels[8:24]), (images[24:], labels[24:])], [0.0, 0.5, 1.0],
                              images[:8])
    assert [r["target_keep_rate"] for r in rows] == [0.0, 0.5, 1.0]
    assert rows[-1]["accuracy"] == 1.0 and rows[-1]["keep_rate"] == 1.0
    assert rows[0]["gmacs"] < rows[1]["gmacs"] < rows[2]["gmacs"]
    assert all(torch.equal(g.logit_threshold, b) for g, b in zip(dispatchers(model), before))
    data = tmp_path / "val.pt"
    torch.save({"images": images, "labels": labels}, data)
    out = tmp_path / "acc.json"
    args = ["bench", "--model", "vit_tiny_patch16_224", "--num-classes", "5", "--accuracy-data", str(data),
            "--budgets", "0.2,1.0", "--calibration-images", "8", "--out", str(out)]
    for key, value in TINY_ARGS.items():
        args += ["--timm-arg", f"{key}={value}"]
    assert main(args) == 0
    sweep = json.loads(out.read_text())["accuracy_vs_budget"]["dyt-mlp"]
    assert [r["target_keep_rate"] for r in sweep] == [0.2, 1.0] and sweep[1]["keep_rate"] == 1.0


def test_entries_know_their_variant_and_tome_gets_proportional_attention_where_possible():
    models = build_models(tiny_settings(methods=("dense", "dyt", "dyt+tome"), variants=dytune.VARIANTS),
                          torch.device("cpu"))
    assert models["dense"].variant is None
    for variant in dytune.VARIANTS:
        assert models[f"dyt-{variant}"].variant == models[f"dyt-{variant}+tome-r2"].variant == variant
        merged = models[f"dyt-{variant}+tome-r2"].model
        assert merged.tome.proportional_attention == (not BLOCK_VARIANTS[variant].dispatches_attention)


def test_checkpoint_entry_is_named_by_its_variant(tmp_path):
    import timm

    torch.manual_seed(0)
    base = timm.create_model("vit_tiny_patch16_224", num_classes=5, **TINY_ARGS)
    dytune.save_pretrained(dytune.convert(base, dytune.DyTConfig(variant="attn_mlp", bottleneck=4)), tmp_path / "ck")
    models = build_models(tiny_settings(methods=("dyt",), checkpoint=str(tmp_path / "ck")), torch.device("cpu"))
    assert list(models) == ["dyt-attn_mlp"] and models["dyt-attn_mlp"].variant == "attn_mlp"
    with pytest.raises(ValueError, match="include variant 'mlp'"):
        build_models(tiny_settings(methods=("official",), variants=("attn",), official_repo=str(tmp_path)),
                     torch.device("cpu"))


def test_accuracy_data_is_decoded_once_for_all_models(tmp_path, monkeypatch):
    import dytune.cli.bench as bench_cli

    data = tmp_path / "val.pt"
    torch.save({"images": torch.randn(24, 3, 32, 32), "labels": torch.arange(24) % 5}, data)
    calls = []
    load = bench_cli._load_labelled
    monkeypatch.setattr(bench_cli, "_load_labelled", lambda *a: calls.append(a) or load(*a))
    out = tmp_path / "acc.json"
    args = ["bench", "--model", "vit_tiny_patch16_224", "--num-classes", "5", "--accuracy-data", str(data),
            "--variants", "mlp,attn", "--budgets", "0.5", "--calibration-images", "8", "--out", str(out)]
    for key, value in TINY_ARGS.items():
        args += ["--timm-arg", f"{key}={value}"]
    assert main(args) == 0
    assert len(calls) == 1
    assert set(json.loads(out.read_text())["accuracy_vs_budget"]) == {"dyt-mlp", "dyt-attn"}


TASK_CASES = {
    # task: (settings, sample shape, rows expected, rows ruled out by the head)
    "video": ({"num_frames": 3}, (1, 3, 3, 32, 32), {"dense", "adaptformer", "dyt-mlp", "tome-r2", "dyt-mlp+tome-r2"},
              "dyt+logits"),
    "segmentation": ({"seg_channels": 16, "seg_inference": "whole"}, (3, 32, 32), {"dense", "adaptformer", "dyt-mlp"},
                     "tome"),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASK_CASES))
def test_task_benchmark_times_the_task_model(task):
    """`--task`: every model is the task's model (same head weights), fed the task's sample; DyT's sparse output
    equals its masked output; rows a head rules out are skipped with a warning; MACs and keep rate are per sample."""
    settings_, shape, expected, ruled_out = TASK_CASES[task]
    settings = tiny_settings(methods=("dense", "adaptformer", "dyt", "dyt+logits", "tome", "dyt+tome"),
                             proportional_attention=False, task=task, task_settings=settings_,
                             timm_kwargs={**TINY_ARGS, "depth": 4})  # four blocks feed the segmentation pyramid
    with pytest.warns(UserWarning) as caught:
        models = build_models(settings, torch.device("cpu"))
    assert any(f"no {ruled_out} rows for the {task} task" in str(w.message) for w in caught)
    assert expected <= set(models) and not any("logits" in k for k in models)
    head = {k: v for k, v in models["dense"].model.state_dict().items() if not k.startswith("backbone.")}
    adapted = models["adaptformer"].model.state_dict()
    assert head and all(torch.equal(v, adapted[k]) for k, v in head.items())
    result = run_benchmark(settings, batch_sizes=(2,), warmup=0, repeats=1, models=models)
    rows = {r["method"]: r for r in result["rows"]}
    assert result["task"] == task and result["sample_unit"] == ("clip" if task == "video" else "img")
    assert abs(rows["dyt-mlp"]["keep_rate"] - 0.5) <= 0.1 and rows["dyt-mlp"]["max_abs_diff_vs_reference"] <= 1e-4
    assert rows["dyt-mlp"]["gmacs"] < rows["adaptformer"]["gmacs"]
    from dytune.bench.runner import bench_task, inputs_for
    sample = inputs_for(bench_task(settings), 1, 0, torch.device("cpu"))
    assert tuple(sample.shape[1:]) == shape
    with torch.no_grad():
        dense_macs = dytune.count_macs(models["dense"].model, sample)
    assert rows["dense"]["gmacs"] == pytest.approx(dense_macs.item() / 1e9)


@pytest.mark.slow
def test_bench_cli_task_and_settings(tmp_path, capsys):
    out = tmp_path / "video.json"
    code = main(["bench", "--task", "video", "--set", "num_frames=2", "--model", "vit_tiny_patch16_224",
                 *sum((["--timm-arg", f"{k}={v}"] for k, v in TINY_ARGS.items()), []), "--num-classes", "4",
                 "--methods", "dense,dyt", "--batch-sizes", "1", "--warmup", "0", "--repeats", "1",
                 "--calibration-images", "4", "--bottleneck", "4", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["settings"]["task_settings"] == {"num_frames": "2"} and "clip/s" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "--set", "num_frames"])
    with pytest.raises(ValueError, match="num_frames"):
        build_models(tiny_settings(task="video", task_settings={"num_frames": 0}), torch.device("cpu"))
    with pytest.raises(ValueError, match="task=.depth.: expected one of classification"):
        tiny_settings(task="depth")


def test_task_benchmark_loads_a_saved_task_model(tmp_path):
    settings = tiny_settings(methods=("dense", "dyt"), task="video", task_settings={"num_frames": 2})
    trained = build_models(settings, torch.device("cpu"))["dyt-mlp"].model
    randomize_adapters(trained)
    dytune.save_pretrained(trained, tmp_path / "video")
    loaded = build_models(tiny_settings(methods=("dense", "dyt"), task="video", task_settings={"num_frames": 2},
                                        checkpoint=str(tmp_path / "video"), num_classes=99),
                          torch.device("cpu"))
    model = loaded["dyt-mlp"].model
    assert model.num_classes == 5 and loaded["dense"].model.num_classes == 5  # the saved class count
    saved = trained.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items() if "adapter" in k)


def test_bench_models_are_the_registry_methods_models():
    """DyT and AdaptFormer rows are what `dytune.methods.METHODS[name].apply` builds with the method's settings class:
    the same modules and state dict, given the same backbone and seed."""
    import copy

    import timm

    from dytune.bench.runner import BENCH_METHODS
    from dytune.methods import METHODS as REGISTRY, AdapterSettings, DyTSettings

    settings = tiny_settings(methods=("dense", "adaptformer", "dyt"), variants=("mlp", "attn"), keep_rate=None)
    models = build_models(settings, torch.device("cpu"))
    torch.manual_seed(settings.seed)
    base = timm.create_model(settings.model, num_classes=settings.num_classes, **TINY_ARGS).eval()
    expected = {}
    for variant in settings.variants:
        expected[f"dyt-{variant}"] = REGISTRY["dyt"].apply(copy.deepcopy(base), DyTSettings(variant=variant,
                                                                                            bottleneck=4))
        torch.manual_seed(settings.seed + 3)  # bench seeds the task head after each model
    expected["adaptformer"] = REGISTRY["adaptformer"].apply(copy.deepcopy(base), AdapterSettings(bottleneck=4))
    for name, model in expected.items():
        built = models[name].model
        assert [(n, type(m)) for n, m in built.named_modules()] == [(n, type(m)) for n, m in model.named_modules()]
        state = model.state_dict()
        assert built.state_dict().keys() == state.keys()
        assert all(torch.equal(v, state[k]) for k, v in built.state_dict().items()), name
    assert {m.registry for m in BENCH_METHODS.values()} - {None} <= set(REGISTRY)


def test_bench_table_refuses_an_unregistered_method():
    from dytune.bench.runner import BenchMethod

    with pytest.raises(ValueError, match="'dyt-typo', which is not registered"):
        BenchMethod("dyt-typo", "a typo")


def test_moe_checkpoint_has_no_adaptformer_row(tmp_path):
    import timm

    torch.manual_seed(0)
    base = timm.create_model("vit_tiny_patch16_224", num_classes=5, **TINY_ARGS)
    dytune.save_pretrained(dytune.convert(base, dytune.DyTConfig(bottleneck=4, experts=3)), tmp_path / "moe")
    with pytest.warns(UserWarning, match="no adaptformer row: .* mixture of 3 experts"):
        models = build_models(tiny_settings(methods=("dense", "adaptformer", "dyt"), checkpoint=str(tmp_path / "moe")),
                              torch.device("cpu"))
    assert set(models) == {"dense", "dyt-mlp"}


def test_bench_settings_are_typed_settings_with_dyt_fields_from_dyt_config():
    import argparse
    import dataclasses

    from dytune.bench.runner import BENCH_METHODS
    from dytune.cli.bench import add_parser, settings_from_args
    from dytune.utils.settings import Settings

    assert issubclass(BenchSettings, Settings)
    mine, dyt = BenchSettings.__dataclass_fields__["bottleneck"], dytune.DyTConfig.__dataclass_fields__["bottleneck"]
    assert mine.default == dyt.default and mine.metadata == dyt.metadata
    parser = add_parser(argparse.ArgumentParser().add_subparsers(), "bench")
    assert settings_from_args(parser.parse_args([])) == BenchSettings()  # every CLI default is the settings' default
    assert settings_from_args(parser.parse_args(["--keep-rate", "none", "--variants", "all"])) == BenchSettings(
        keep_rate=None, variants=dytune.VARIANTS)
    with pytest.raises(ValueError, match="methods=.*each one of " + ", ".join(BENCH_METHODS).replace("+", "\\+")):
        BenchSettings(methods=("dense", "sparse"))
    with pytest.raises(ValueError, match="variants=.*each one of mlp"):
        BenchSettings(variants=("mpl",))
    with pytest.raises(ValueError, match="bottleneck=0: expected an integer >= 1"):
        BenchSettings(bottleneck=0)
    settings = BenchSettings()
    with pytest.raises(ValueError, match="keep_rate=1.5: expected a number in \\[0, 1\\] or None"):
        settings.keep_rate = 1.5  # checked on assignment too
    assert dataclasses.asdict(settings) == settings.to_dict()


def test_bench_precisions_follow_the_runtime_rules():
    """One precision table and autocast (dytune.utils.runtime) for training, evaluation and bench."""
    with pytest.raises(ValueError, match="precision=fp16 needs CUDA; use bf16 on CPU"):
        run_benchmark(tiny_settings(methods=("dense",)), batch_sizes=(1,), precisions=("fp16",), warmup=0, repeats=1)
    with pytest.raises(ValueError, match="precision='fp8': expected one of fp32, bf16, fp16"):
        run_benchmark(tiny_settings(methods=("dense",)), batch_sizes=(1,), precisions=("fp8",), warmup=0, repeats=1)
