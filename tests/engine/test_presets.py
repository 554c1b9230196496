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


def test_the_swin_preset_is_mmsegmentations_swin_b_upernet_recipe_with_dyt():
    """configs/ade20k_swin.yaml: mmseg's Swin-B UperNet ADE20K recipe (AdamW 6e-5, weight decay 0.01, poly power 1,
    160k iterations at 16 images = 127 epochs, 1,500 warm-up iterations = 1.19 epochs, UperNet 512 channels, FCN
    auxiliary head on stage 3 at 0.4, drop path 0.3, whole-image testing) with DyT (MLP dispatch, bottleneck 64,
    r = 0.5); the task builds it as the four Swin-B stages feeding the head."""
    from dytune.backbones import find_backbone
    from dytune.tasks import build_task
    from dytune.tasks.segmentation.model import StageNorms

    assert "base: segmentation_base.yaml" in (ROOT / "configs" / "ade20k_swin.yaml").read_text()
    cfg = TrainConfig.load([str(ROOT / "configs" / "ade20k_swin.yaml")])
    expected = dict(dataset="ade20k", model="swin_base_patch4_window12_384.ms_in1k", img_size=512, batch_size=16,
                    lr=6e-5, weight_decay=0.01, min_lr=0.0, lr_schedule="poly", poly_power=1.0, epochs=127,
                    warmup_epochs=1.19, seg_channels=512, seg_aux_weight=0.4, seg_inference="whole",
                    seg_scale=[2048, 512], seg_ratio_range=[0.5, 2.0], method="dyt", variant="mlp", bottleneck=64,
                    target_rate=0.5, model_kwargs={"drop_path_rate": 0.3}, mean=[0.485, 0.456, 0.406],
                    std=[0.229, 0.224, 0.225])
    assert {key: getattr(cfg, key) for key in expected} == expected
    task = build_task(cfg.replace(pretrained=False))
    seg = task.add_head(task.create_backbone(150, pretrained=False), 150)
    backbone = find_backbone(seg)
    assert backbone.family == "timm_swin" and backbone.architecture()["depths"] == [2, 2, 18, 2]
    assert backbone.architecture()["window_size"][0] == [12, 12]
    assert isinstance(seg.neck, StageNorms) and seg.neck.out_channels == [128, 256, 512, 1024]
    assert seg.decode_head.conv_seg.in_channels == 512
    assert seg.auxiliary_head.convs[0][0].in_channels == 512 and seg.auxiliary_head.conv_seg.in_channels == 256
    assert seg.backbone.layers[3].blocks[1].drop_path1.drop_prob == pytest.approx(0.3)  # the last block's rate
