"""The front ends of the offline benchmarks' generators and of `dytune pretrain` (dytune.cli.mini)."""
import argparse

from dytune.cli import mini
from dytune.mini.pretrain import PretrainConfig


def test_miniseg_parser_builds_and_runs(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    mini.add_parser(parser.add_subparsers(), "miniseg")
    args = parser.parse_args(["miniseg", "--root", str(tmp_path / "m"), "--train", "2", "--val", "1", "--size", "32"])
    assert args.run(args) == 0 and "15 classes, 2 + 1 images of 32px" in capsys.readouterr().out


def test_pretrain_flags_default_to_the_config_and_fill_every_field():
    parser = argparse.ArgumentParser()
    mini.add_parser(parser.add_subparsers(), "pretrain")
    assert mini.pretrain_config(parser.parse_args(["pretrain"])) == PretrainConfig()
    args = parser.parse_args(["pretrain", "--out", "o", "--depth", "2", "--head-only", "--max-minutes", "3",
                              "--patch-weight", "0.5", "--export", "x"])
    config = mini.pretrain_config(args)
    chosen = (config.out, config.depth, config.head_only, config.max_minutes, config.patch_weight)
    assert chosen == ("o", 2, True, 3.0, 0.5)


def test_task_builds_take_the_same_flags_with_their_defaults():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    mini.add_parser(sub, "minivtab")
    mini.add_parser(sub, "minivideo")
    common = {"root": "r", "seed": 0, "tasks": None, "train": 800, "val": 200, "test": 1000}
    args = vars(parser.parse_args(["minivtab", "--root", "r"]))
    assert {k: args[k] for k in common} == common and args["run"] is mini.run_minivtab
    args = vars(parser.parse_args(["minivideo", "--root", "r", "--tasks", "motion_order", "--val", "3"]))
    assert {k: args[k] for k in common} == {**common, "tasks": ["motion_order"], "val": 3}
    assert args["frames"] == mini.minivideo.FRAMES and args["run"] is mini.run_minivideo
