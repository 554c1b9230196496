"""How far a timing can be trusted: the spread of repeated rounds and the warning that says what to do."""
import pytest
import torch

from dytune.engine.evaluation import _throughput_spread
from dytune.utils.runtime import UNRELIABLE_SPREAD, relative_spread, timing_warning


def test_relative_spread_is_half_the_range_over_the_median():
    assert relative_spread([10.0, 11.0, 12.0]) == pytest.approx(1.0 / 11.0)
    assert relative_spread([5.0]) == 0.0


def test_a_timing_within_the_bound_gets_no_warning_and_a_wider_one_says_what_to_do():
    assert timing_warning("the speed-up", UNRELIABLE_SPREAD) is None
    warning = timing_warning("the speed-up", 0.25)
    assert warning.startswith("warning: the speed-up varied by ±25.0 % between rounds")
    just_over = timing_warning("the speed-up", UNRELIABLE_SPREAD + 0.004)
    assert just_over.startswith(f"warning: the speed-up varied by ±{100 * UNRELIABLE_SPREAD + 0.4:.1f} %")
    assert "quiet machine" in warning and "--threads" in warning


def test_evaluation_throughput_spread_leaves_out_the_warm_up_and_partial_batches():
    rates = [(8, 1.0), (8, 100.0), (8, 110.0), (8, 90.0), (3, 5.0)]
    out = _throughput_spread(rates)
    assert out["threads"] == torch.get_num_threads()
    assert out["images_per_s_spread"] == pytest.approx(10.0 / 100.0)
    assert "images_per_s_spread" not in _throughput_spread([(8, 1.0), (8, 100.0), (3, 5.0)])
