"""Every TrainConfig setting is parsed to its declared type and range when the config is built, with a message naming
the setting, the value and what is expected."""
import dataclasses
import re
import typing

import pytest

from dytune.run_config import RESUME_IGNORED, Bounds, TrainConfig

HINTS = {name: hint for name, (_, hint) in TrainConfig.setting_fields().items()}
FIELDS = {name: spec for name, (spec, _) in TrainConfig.setting_fields().items()}


def _wrong_type(hint):
    """A value of the wrong type for annotation `hint` (as YAML would hand it over)."""
    if typing.get_origin(hint) is typing.Union:
        return _wrong_type(next(a for a in typing.get_args(hint) if a is not type(None)))
    return {int: "abc", float: "abc", bool: "maybe", str: 5, typing.Any: None}.get(
        hint, {list: "x", dict: [1]}.get(typing.get_origin(hint)))


def _out_of_range(bounds: Bounds):
    return bounds.low - (0 if bounds.low_open else 1) if bounds.low is not None else bounds.high + 1


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_setting_refuses_a_value_of_the_wrong_type(name):
    value = _wrong_type(HINTS[name])
    with pytest.raises(ValueError, match=rf"^suite run x: {name}={re.escape(repr(value))}: expected "):
        TrainConfig.from_dict({name: value}, source="suite run x")
    with pytest.raises(ValueError, match=rf"^{name}="):
        TrainConfig(**{name: value})
    cfg = TrainConfig()
    with pytest.raises(ValueError, match=rf"^{name}="):
        setattr(cfg, name, value)  # assignment is checked too
    assert getattr(cfg, name) == getattr(TrainConfig(), name)


RANGED = sorted(n for n, f in FIELDS.items() if f.metadata.get("bounds") is not None)


def test_the_ranges_that_matter_are_declared():
    assert {"epochs", "batch_size", "lr", "blr", "weight_decay", "target_rate", "warmup_epochs", "min_lr", "tau",
            "accum_steps", "eval_every", "num_workers", "stop_after", "clip_grad", "label_smoothing"} <= set(RANGED)


@pytest.mark.parametrize("name", RANGED)
def test_every_ranged_setting_refuses_a_value_out_of_range(name):
    bounds = FIELDS[name].metadata["bounds"]
    value = _out_of_range(bounds)
    if typing.get_origin(HINTS[name]) is list:
        value = [1.0, value]
    with pytest.raises(ValueError, match=rf"{name}=.*expected .*{re.escape(str(bounds))}"):
        TrainConfig(**{name: value})


@pytest.mark.parametrize("override, message", [
    ("epochs=2.5", "epochs=2.5: expected an integer >= 1"),
    ("epochs=abc", "epochs='abc': expected an integer >= 1"),
    ("epochs=0", "epochs=0: expected an integer >= 1"),
    ("lr=abc", "lr='abc': expected a number >= 0 or None"),
    ("lr=-0.001", "lr=-0.001: expected a number >= 0 or None"),
    ("lr=.nan", "lr=nan: expected a number >= 0 or None"),
    ("lr=nan", "lr='nan': expected a number >= 0 or None"),
    ("target_rate=abc", "target_rate='abc': expected a number in (0, 1]"),
    ("target_rate=0", "target_rate=0: expected a number in (0, 1]"),
    ("target_rate=1.5", "target_rate=1.5: expected a number in (0, 1]"),
    ("skip_bad_images=maybe", "skip_bad_images='maybe': expected true or false"),
    ("weight_decay=-1", "weight_decay=-1: expected a number >= 0"),
    ("precision=fp8", "precision='fp8': expected one of fp32, bf16, fp16"),
    ("augment=flip", "augment='flip': expected one of none, rrc_flip"),
    ("variant=block", "variant='block': expected one of mlp, attn, attn_mlp, layer"),
    ("method=adapter", "method='adapter': expected one of dyt, "),
    ("dataset=imagenet", "dataset='imagenet': expected one of vtab, folder, cifar100"),
    ("device=gpu", "device='gpu': expected auto, cpu, mps, cuda or cuda:N"),
    ("std=[0.5,0,0.5]", "std=[0.5, 0, 0.5]: expected a list of numbers > 0"),
    ("mean=0.5", "mean=0.5: expected a list of numbers"),
    ("model_kwargs=[1]", "model_kwargs=[1]: expected a mapping of names to values"),
    ("output_dir=", "output_dir='': expected a folder path (not empty)"),
    ("stop_after=0", "stop_after=0: expected an integer >= 1 or None"),
])
def test_overrides_are_parsed_at_load_time_with_a_message_naming_the_setting(override, message):
    with pytest.raises(ValueError) as error:
        TrainConfig.load([], [override])
    assert str(error.value).startswith("overrides: " + message)


def test_values_are_converted_to_their_declared_types(tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("lr: 1\nwarmup_epochs: 2\nmin_lr: 0\nstd: [1, 1, 1]\nblr: 1e-3\n")
    cfg = TrainConfig.load([str(preset)], ["epochs=3", "clip_grad=1", "tau_final=None", "task=010", "seed=7",
                                           "skip_bad_images=yes", "device=cuda:1", "stop_after="])
    assert (cfg.lr, cfg.warmup_epochs, cfg.min_lr, cfg.blr, cfg.clip_grad) == (1.0, 2.0, 0.0, 1e-3, 1.0)
    assert all(type(v) is float for v in (cfg.lr, cfg.warmup_epochs, cfg.min_lr, cfg.blr, cfg.clip_grad, *cfg.std))
    assert (cfg.epochs, cfg.seed, cfg.tau_final, cfg.stop_after) == (3, 7, None, None)
    assert cfg.task == "010"  # a text setting keeps the text typed (YAML would read 010 as the integer 8)
    assert cfg.skip_bad_images is True and cfg.device == "cuda:1"
    assert TrainConfig(mean=(0.1, 0.2, 0.3)).mean == [0.1, 0.2, 0.3]  # tuples become the declared list
    assert TrainConfig.load([], ["lr=1e-3"]).lr == 1e-3  # YAML 1.1 leaves 1e-3 a string
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg


def test_bad_files_and_overrides_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML"):
        TrainConfig.load([str(bad)])
    bad.write_text("- epochs\n")
    with pytest.raises(ValueError, match=r"bad.yaml: expected a mapping of settings, got list"):
        TrainConfig.load([str(bad)])
    bad.write_text("epochs: 2.5\n")
    with pytest.raises(ValueError, match=r"^.*bad.yaml, overrides: epochs=2.5: expected an integer >= 1$"):
        TrainConfig.load([str(bad)])
    with pytest.raises(ValueError, match=r"override 'model_kwargs=\{a': the value is not valid YAML"):
        TrainConfig.load([], ["model_kwargs={a"])
    with pytest.raises(ValueError, match=r"override 'epochs': expected key=value"):
        TrainConfig.load([], ["epochs"])


def test_task_settings_live_with_their_task_and_keep_their_flat_keys():
    from dytune.tasks.segmentation import SegmentationSettings
    from dytune.tasks.video import VideoSettings

    own = {f.name for f in dataclasses.fields(TrainConfig)}
    assert not own & {"num_frames", "seg_channels"} and {"num_frames", "seg_channels"} <= set(FIELDS)
    cfg = TrainConfig(num_frames=4, seg_channels=32)
    assert (cfg.num_frames, cfg.seg_channels, cfg.to_dict()["num_frames"]) == (4, 32, 4)
    assert FIELDS["num_frames"] is VideoSettings.__dataclass_fields__["num_frames"]
    assert "segmentation settings (task segmentation):" in TrainConfig.help()
    assert SegmentationSettings().seg_channels == TrainConfig().seg_channels


def test_help_lists_every_setting_with_what_it_accepts():
    lines = [line for line in TrainConfig.help().splitlines() if line.startswith("  ")]
    assert sorted(line.split()[0] for line in lines) == sorted(TrainConfig.setting_names())  # plug-ins registered now
    assert all(line.split("):", 1)[1].strip() for line in lines)
    text = TrainConfig.help()
    assert "  epochs (an integer >= 1; default 100): " in text
    assert "  target_rate (a number in (0, 1]; default 0.5): " in text
    assert "  precision (one of fp32, bf16, fp16; default 'fp32'): " in text
    assert "  overwrite (true or false; default False): " in text


def test_resume_ignores_where_the_run_lives():
    assert RESUME_IGNORED == ("stop_after", "num_workers", "output_dir", "overwrite")
    assert set(RESUME_IGNORED) <= set(FIELDS) and TrainConfig().overwrite is False
