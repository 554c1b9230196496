"""YAML presets that share a base (`base:`): merge order, relative paths, refused cycles, and the shipped presets."""
from pathlib import Path
from typing import Dict

import pytest

from dytune.run_config import TrainConfig, read_preset

ROOT = Path(__file__).resolve().parents[2]

# The segmentation presets as they were before they shared configs/segmentation_base.yaml.
_SEGMENTATION = {
    "img_size": 512, "seg_scale": [2048, 512], "seg_ratio_range": [0.5, 2.0], "seg_inference": "slide",
    "seg_stride": 341, "seg_channels": 768, "seg_aux_weight": 0.4, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
    "model": "vit_base_patch16_224.orig_in21k", "pretrained": True, "method": "dyt", "distill": False,
    "bottleneck": 64, "adapter_scale": 0.1, "target_rate": 0.5, "lr_schedule": "poly", "poly_power": 1.0,
    "batch_size": 16, "lr": 0.001, "min_lr": 0.0, "weight_decay": 0.05, "num_workers": 8,
}
BEFORE = {
    "ade20k": {**_SEGMENTATION, "dataset": "ade20k", "train_split": "training", "eval_split": "validation",
               "epochs": 127, "warmup_epochs": 1.19, "eval_every": 16},
    "cocostuff": {**_SEGMENTATION, "dataset": "cocostuff", "train_split": "train2017", "eval_split": "val2017",
                  "epochs": 11, "warmup_epochs": 0.2, "eval_every": 2},
}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_segmentation_presets_resolve_as_before_they_shared_a_base(name):
    assert "base" in (ROOT / "configs" / f"{name}.yaml").read_text()
    loaded = TrainConfig.load([str(ROOT / "configs" / f"{name}.yaml")]).to_dict()
    assert loaded == TrainConfig.from_dict(BEFORE[name]).to_dict()
    assert read_preset(ROOT / "configs" / f"{name}.yaml") == BEFORE[name]


def _write(folder: Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


@pytest.mark.parametrize("files, expected", [
    ({"a.yaml": "base: b.yaml\nepochs: 3\n", "b.yaml": "epochs: 2\nseed: 5\n"}, {"epochs": 3, "seed": 5}),
    ({"a.yaml": "base: [b.yaml, c.yaml]\n", "b.yaml": "epochs: 2\nseed: 5\n", "c.yaml": "seed: 6\n"},
     {"epochs": 2, "seed": 6}),
    ({"a.yaml": "base: sub/b.yaml\n", "sub/b.yaml": "base: c.yaml\nseed: 1\n", "sub/c.yaml": "seed: 0\nlr: 0.1\n"},
     {"seed": 1, "lr": 0.1}),
    ({"a.yaml": "base: [b.yaml, c.yaml]\n", "b.yaml": "base: d.yaml\n", "c.yaml": "base: d.yaml\n",
      "d.yaml": "seed: 4\n"}, {"seed": 4}),
    ({"a.yaml": "base: []\nseed: 2\n"}, {"seed": 2}),
], ids=["one base, own keys win", "list, later wins", "relative to each preset's folder", "shared ancestor",
        "empty list"])
def test_bases_merge_in_order_and_the_preset_wins(tmp_path, files, expected):
    _write(tmp_path, files)
    assert read_preset(tmp_path / "a.yaml") == expected
    cfg = TrainConfig.load([str(tmp_path / "a.yaml")])
    assert {key: getattr(cfg, key) for key in expected} == expected


@pytest.mark.parametrize("files, error, message", [
    ({"a.yaml": "base: a.yaml\n"}, ValueError, r"a\.yaml: presets form a cycle through base: .*a\.yaml -> .*a\.yaml"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: [c.yaml]\n", "c.yaml": "base: a.yaml\n"}, ValueError,
     r"cycle through base: .*a\.yaml -> .*b\.yaml -> .*c\.yaml -> .*a\.yaml"),
    ({"a.yaml": "base: missing.yaml\n"}, FileNotFoundError, r"a\.yaml: base preset 'missing\.yaml' not found"),
    ({"a.yaml": "base: {seed: 1}\n"}, ValueError, r"a\.yaml: base=\{'seed': 1\}: expected a preset file or a list"),
    ({"a.yaml": "base: [b.yaml, 3]\n"}, ValueError, r"base=\['b\.yaml', 3\]: expected a preset file"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "- 1\n"}, ValueError, r"b\.yaml: expected a mapping of settings"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "nope: 1\n"}, ValueError, r"unknown setting\(s\) \['nope'\]"),
], ids=["self", "three-file cycle", "missing", "mapping (a suite's base)", "not a file name", "not a mapping",
        "unknown key in a base"])
def test_bad_bases_are_refused_naming_the_file(tmp_path, files, error, message):
    _write(tmp_path, files)
    with pytest.raises(error, match=message):
        TrainConfig.load([str(tmp_path / "a.yaml")])


def test_a_suite_base_names_settings_not_files(tmp_path):
    from dytune.engine.suite_file import load_suite

    path = tmp_path / "suite.yaml"
    path.write_text("base: preset.yaml\ntasks: [a]\nseeds: [0]\nruns: [{name: x}]\noutput: out\n")
    with pytest.raises(ValueError, match=f"{path}: base='preset.yaml': expected a mapping of settings"):
        load_suite(path)
