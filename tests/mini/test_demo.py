import json

import pytest
import yaml

from dytune.cli import main
from dytune.mini.demo import CONFIGS, DemoOptions, demo_config, resolve, suite_recipe
from dytune.pretrained import ASSETS, mini_vit_info
from dytune.run_config import TrainConfig

KINDS = {
    # --task: (extra arguments, the metric line, the sample unit)
    "image": (["--subset", "location"], "test acc", "img"),
    "video": (["--subset", "shapes_motion"], "test acc", "clip"),
    "seg": ([], "test miou", "img"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_demo_runs_end_to_end_on_a_reduced_setting(kind, tmp_path, capsys):
    if not (ASSETS / "mini_vit.json").is_file():
        pytest.skip("the mini backbone is not in this copy")
    if kind == "video":
        pytest.importorskip("av")
    extra, metric, unit = KINDS[kind]
    args = ["demo", "--task", kind, *extra, "--epochs", "1", "--train-images", "32", "--test-images", "16",
            "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--speed-batch", "4",
            "--repeats", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for line in (metric, "keep rate per layer", f"MACs per {unit}", f"{unit}/s vs dense", "over 1 rounds", "threads",
                 "skip map"):
        assert line in out
    picture = next((tmp_path / "runs").glob("*/skip_map.png"))
    assert picture.stat().st_size > 5000
    assert main(args) == 0  # a finished run is reused, not retrained
    assert "reusing the finished run" in capsys.readouterr().out


def test_demo_speed_reports_its_spread_and_threads(monkeypatch):
    import torch

    from dytune.bench import timing as timing_module
    from dytune.mini.demo import speed

    # a fake clock that only the two models advance, so a busy machine cannot change the numbers
    clock = [0.0]
    monkeypatch.setattr(timing_module.time, "perf_counter", lambda: clock[0])
    delays = iter([0.001, 0.002, 0.008])  # the warm-up, then two rounds of a busy machine: the second 4x slower

    def dense(x):
        clock[0] += next(delays)
        return x

    def dyt(x):
        clock[0] += 0.001
        return x

    timing = speed(dyt, dense, torch.zeros(2, 3), lambda model, x: model(x), repeats=2)
    assert timing["rounds"] == 2 and timing["threads"] == torch.get_num_threads()
    assert timing["spread"] == pytest.approx(0.6)  # per-round speed-ups 2 and 8: half the range over the median


def test_demo_refuses_a_subset_of_another_data_set(tmp_path, capsys):
    assert main(["demo", "--task", "seg", "--subset", "digits", "--data-root", str(tmp_path)]) != 0
    assert "--subset 'digits' is not one of nothing" in capsys.readouterr().err


# the demo's former recipes (dytune/mini/demo.py before it read the suites), written out: its settings must not change
def _former(kind, opts, root, meta=None):
    shared = dict(img_size=64, mean=[0.5] * 3, std=[0.5] * 3, num_workers=0, model="dytune_mini_vit", pretrained=True,
                  method="dyt", bottleneck=8, adapter_scale=1.0, target_rate=opts.target_rate, epochs=opts.epochs,
                  weight_decay=1e-4, seed=opts.seed, output_dir=str(opts.out / (opts.subset or opts.task)),
                  eval_every=opts.epochs)
    lr = opts.lr or 1e-2
    if kind == "image":
        own = dict(dataset="vtab", data_root=str(root), task=opts.subset, cache_images=True, batch_size=64, lr=lr,
                   warmup_epochs=min(2.0, opts.epochs / 5), min_lr=1e-5)
    elif kind == "video":
        dataset, split = {"kinetics": ("k400", f"train{meta['counts']['train']}"), "ssv2": ("ssv2", "train")}[
            meta["layout"]]
        own = dict(dataset=dataset, data_root=str(root), train_split=split, eval_split="test", num_frames=4,
                   frame_stride=4, test_views=3, cache_images=True, batch_size=32, lr=lr, warmup_epochs=1.0,
                   min_lr=1e-5)
    else:
        own = dict(dataset="ade20k", data_root=str(root), train_split="training", eval_split="validation",
                   seg_scale=[512, 128], seg_inference="whole", seg_channels=128, batch_size=16, lr=lr,
                   lr_schedule="poly", warmup_epochs=0.5, min_lr=0.0, distill=False)
    return TrainConfig.from_dict({**shared, **own})


CASES = [  # (--task, --subset, the built data's meta.json for video, the suite, its task)
    ("image", "digits", None, "minivtab", None), ("image", "count", None, "minivtab", None),
    ("video", "shapes_motion", {"layout": "kinetics", "counts": {"train": 800}}, "minivideo", "shapes_motion"),
    ("video", "motion_order", {"layout": "ssv2", "counts": {"train": 800}}, "minivideo", "motion_order"),
    ("seg", None, None, "miniseg", None),
]


@pytest.mark.parametrize("kind, subset, meta, suite, task", CASES)
@pytest.mark.parametrize("flags", [{}, {"epochs": 3, "lr": 3e-3, "target_rate": 0.3, "seed": 2}])
def test_demo_settings_are_the_suite_base_plus_its_stated_differences(kind, subset, meta, suite, task, flags,
                                                                      tmp_path):
    opts = resolve(DemoOptions(task=kind, subset=subset, out=tmp_path / "runs", **flags))
    root = tmp_path / "data"
    root.mkdir()
    if meta:
        (root / "meta.json").write_text(json.dumps(meta))
    got = demo_config(opts, root).to_dict()
    assert got == _former(kind, opts, root, meta).to_dict()  # the same run as before

    recipe = yaml.safe_load((CONFIGS / f"{suite}_suite.yaml").read_text())
    stated = {  # what the demo changes in its suite's recipe
        "image": {"warmup_epochs": min(2.0, opts.epochs / 5), "task": subset},
        "video": {"train_split": meta and {"kinetics": "train800", "ssv2": "train"}[meta["layout"]],
                  "warmup_epochs": 1.0},
        "seg": {"warmup_epochs": 0.5},
    }[kind]
    run = dict(data_root=str(root), method="dyt", target_rate=opts.target_rate, epochs=opts.epochs,
               lr=opts.lr or 1e-2, seed=opts.seed, output_dir=str(opts.out / (subset or kind)), eval_every=opts.epochs)
    expected = {**recipe["base"], **(recipe.get("task_settings") or {}).get(task, {}), **stated, **run}
    assert got == TrainConfig.from_dict(expected).to_dict()


def test_the_suites_normalise_as_the_shipped_backbone():
    if not (ASSETS / "mini_vit.json").is_file():
        pytest.skip("the mini backbone is not in this copy")
    info = mini_vit_info()
    for suite in ("minivtab", "minivideo", "miniseg"):
        base = suite_recipe(suite)
        assert (base["img_size"], base["mean"], base["std"]) == (
            info["timm_kwargs"].get("img_size", 64), info["mean"], info["std"]), suite
