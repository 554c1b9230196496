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

    from dytune.bench.cli import add_parser
    from dytune.bench.runner import BenchSettings
    from dytune.engine import TrainConfig

    assert getattr(TrainConfig(), name) == getattr(DyTConfig(), name)
    if name == "bottleneck":
        bench = add_parser(argparse.ArgumentParser().add_subparsers(), "bench").parse_args([])
        assert bench.bottleneck == BenchSettings().bottleneck == DyTConfig().bottleneck
