"""The one rank-0 test: `is_main_process` (torchrun's RANK, or the joined process group's rank)."""
import torch.distributed as dist

from dytune.utils import distributed


def test_rank_from_torchrun_before_a_group_is_joined(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.process_rank() == 0 and distributed.is_main_process()
    monkeypatch.setenv("RANK", "2")
    assert distributed.process_rank() == 2 and not distributed.is_main_process()


def test_the_joined_group_decides(monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "2")  # a stale variable; the group says rank 0
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert distributed.process_rank() == 0 and distributed.is_main_process()
    finally:
        dist.destroy_process_group()
    assert distributed.DistEnv(rank=0).is_main and not distributed.DistEnv(rank=1).is_main
