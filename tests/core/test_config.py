import pytest

from dytune import DyTConfig


def test_defaults_follow_the_paper():
    c = DyTConfig()
    assert (c.variant, c.bottleneck, c.adapter_scale, c.adapter_dropout) == ("mlp", 64, 1.0, 0.1)
    assert (c.experts, c.tau, c.threshold, c.target_rate, c.layers) == (1, 5.0, 0.5, 0.5, None)


def test_round_trip_through_dict():
    c = DyTConfig(variant="layer", bottleneck=8, experts=4, layers=[3, 1])
    assert c.layers == (1, 3)
    assert DyTConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("kwargs, message", [
    (dict(variant="block"), "variant"),
    (dict(bottleneck=0), "bottleneck"),
    (dict(bottleneck=2.5), "bottleneck"),
    (dict(experts=0), "experts"),
    (dict(target_rate=0.0), "target_rate"),
    (dict(target_rate=1.5), "target_rate"),
    (dict(threshold=1.0), "threshold"),
    (dict(tau=0.0), "tau"),
    (dict(adapter_dropout=1.0), "adapter_dropout"),
    (dict(layers=[1, 1]), "layers"),
    (dict(layers=[-1]), "layers"),
])
def test_bad_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DyTConfig(**kwargs)


def test_unknown_field_is_named():
    with pytest.raises(ValueError, match="bottelneck"):
        DyTConfig.from_dict({"bottelneck": 8})


def test_every_field_has_help():
    assert all(line.split(":", 1)[1].strip() for line in DyTConfig.help().splitlines())


@pytest.mark.parametrize("name", ["variant", "bottleneck", "adapter_scale", "adapter_dropout", "target_rate", "tau",
                                  "tau_final"])
def test_the_command_line_and_the_python_api_share_each_default(name):
    import argparse

    from dytune.cli.bench import add_parser
    from dytune.bench.runner import BenchSettings
    from dytune.engine import TrainConfig

    assert getattr(TrainConfig(), name) == getattr(DyTConfig(), name)
    if name == "bottleneck":
        bench = add_parser(argparse.ArgumentParser().add_subparsers(), "bench").parse_args([])
        assert bench.bottleneck == BenchSettings().bottleneck == DyTConfig().bottleneck


def test_dyt_settings_are_declared_once():
    """Every DyT field a method exposes as a flat key takes DyTConfig's help text, range, choices and default."""
    import dataclasses

    from dytune.methods import AdapterSettings, DyTSettings, MoESettings

    own = DyTConfig.__dataclass_fields__
    shared = 0
    for cls in (AdapterSettings, DyTSettings, MoESettings):
        for f in dataclasses.fields(cls):
            if f.name in own:
                shared += 1
                assert dict(f.metadata) == dict(own[f.name].metadata), (cls.__name__, f.name)
                expected = 4 if (cls, f.name) == (MoESettings, "experts") else own[f.name].default
                assert f.default == expected, (cls.__name__, f.name)
    assert shared == 4 + 7 + 8
    for name in ("rate_weight", "distill"):  # the objective's, not the conversion's
        assert name in DyTSettings.__dataclass_fields__ and name not in own


@pytest.mark.parametrize("name, value, message", [
    ("bottleneck", 0, r"^DyTConfig\.bottleneck=0: expected an integer >= 1$"),
    ("threshold", 0.0, r"^DyTConfig\.threshold=0\.0: expected a number in \(0, 1\)$"),
    ("tau_final", -1.0, r"^DyTConfig\.tau_final=-1\.0: expected a number > 0 or None$"),
    ("layers", [2, 2], r"^DyTConfig\.layers=\[2, 2\]: expected distinct block indices >= 0, or None$"),
    ("layers", [True], r"^DyTConfig\.layers=\[True\]: expected a list of integers >= 0 or None$"),
    ("variant", "block", r"^DyTConfig\.variant='block': expected one of mlp, attn, attn_mlp, layer$"),
])
def test_assignment_is_checked_and_leaves_the_value(name, value, message):
    config = DyTConfig(layers=[1])
    before = getattr(config, name)
    with pytest.raises(ValueError, match=message):
        setattr(config, name, value)
    assert getattr(config, name) == before


def test_a_saved_adapter_config_still_loads():
    saved = {"variant": "attn", "bottleneck": 8, "adapter_scale": 1, "adapter_dropout": 0.1, "experts": 1, "tau": 5,
             "tau_final": None, "threshold": 0.5, "target_rate": 0.7, "layers": [4, 0]}
    config = DyTConfig.from_dict(saved)
    assert (config.adapter_scale, config.tau, config.layers) == (1.0, 5.0, (0, 4))
    assert DyTConfig.from_dict(config.to_dict()) == config
