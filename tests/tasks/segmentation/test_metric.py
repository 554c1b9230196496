"""SegmentationMetric: a hand-computed example, torchmetrics as a second oracle, and the 2-process reduction."""
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dytune.tasks.segmentation.metric import SegmentationMetric

# fork reuses the imported torch (seconds saved per process); the workers only sum small CPU tensors over gloo
START_METHOD = "fork" if "fork" in mp.get_all_start_methods() else "spawn"


def example():
    # classes 0..3; class 3 occurs nowhere, class 2 is only predicted; 255 pixels are ignored
    target = torch.tensor([[[0, 0, 1, 1],
                            [0, 1, 1, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1],
                          [2, 1, 0, 3]]])
    return pred, target


def test_hand_computed_example():
    pred, target = example()
    metric = SegmentationMetric(4)
    metric.update(pred, target)
    m = metric.compute()
    # class 0: gt 3, pred 2, hit 1 -> IoU 1/4, acc 1/3; class 1: gt 4, pred 4, hit 3 -> IoU 3/5, acc 3/4
    # class 2: gt 0, pred 1 -> IoU 0 (counts), acc undefined; class 3: predicted only on an ignored pixel -> absent
    assert m["iou"][:3] == pytest.approx([25.0, 60.0, 0.0]) and m["iou"][3] is None
    assert m["class_acc"][:2] == pytest.approx([100 / 3, 75.0]) and m["class_acc"][2:] == [None, None]
    assert m["miou"] == pytest.approx((25 + 60 + 0) / 3)
    assert m["macc"] == pytest.approx((100 / 3 + 75) / 2)
    assert m["acc"] == pytest.approx(400 / 7)
    assert m["pixels"] == 7 and m["classes"] == 3
    assert SegmentationMetric.primary == "miou" and "miou" in m


def test_logits_are_arg_maxed_and_batches_accumulate():
    pred, target = example()
    logits = torch.nn.functional.one_hot(pred, 4).permute(0, 3, 1, 2).float()
    a, b = SegmentationMetric(4), SegmentationMetric(4)
    a.update(logits, target)
    a.update(logits, target)
    b.update(torch.cat([pred, pred]), torch.cat([target, target]))
    assert a.compute() == b.compute()
    assert torch.equal(a.confusion, 2 * torch.tensor([[1, 1, 1, 0], [1, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))


def test_invalid_samples_are_not_counted():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randint(0, 3, (4, 5, 5), generator=gen), torch.randint(0, 3, (4, 5, 5), generator=gen)
    a, b = SegmentationMetric(3), SegmentationMetric(3)
    a.update(pred, target, valid=torch.tensor([True, False, True, False]))
    b.update(pred[[0, 2]], target[[0, 2]])
    assert torch.equal(a.confusion, b.confusion)


def test_bad_input_is_named():
    metric = SegmentationMetric(3)
    with pytest.raises(ValueError, match=r"target labels \[3, 7\] are outside 0..2"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[3, 7], [0, 255]]]))
    with pytest.raises(ValueError, match=r"expected logits \[B, K, h, w\] or labels \[B, H, W\] of the target's size"):
        metric.update(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="logits have 5 classes, expected 3"):
        metric.update(torch.zeros(1, 5, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="one flag per sample"):
        metric.update(torch.zeros(2, 2, 2, dtype=torch.long), torch.zeros(2, 2, 2, dtype=torch.long),
                      valid=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="ignore_index=1 is a class label"):
        SegmentationMetric(3, ignore_index=1)


def test_empty_metric_is_zero_not_an_error():
    m = SegmentationMetric(3).compute()
    assert m["miou"] == m["acc"] == 0.0 and m["pixels"] == 0 and m["iou"] == [None] * 3
    assert json.loads(json.dumps(m)) == m


def test_logits_of_another_size_are_resized_to_the_labels_as_mmseg():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0, :, 0] = logits[0, 1, :, 1] = 5.0  # left half class 0, right half class 1
    target = torch.tensor([[[0, 0, 1, 1]] * 4])
    metric = SegmentationMetric(2)
    metric.update(logits, target)
    assert metric.compute()["acc"] == 100.0
    metric.reset()
    assert metric.confusion.sum() == 0 and metric.better(2.0, 1.0)


def test_matches_torchmetrics_jaccard_index():
    pytest.importorskip("torchmetrics")
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    gen = torch.Generator().manual_seed(0)
    k = 6
    target = torch.randint(0, k, (3, 17, 13), generator=gen)
    pred = torch.where(torch.rand(target.shape, generator=gen) < 0.6, target,
                       torch.randint(0, k, target.shape, generator=gen))
    target[torch.rand(target.shape, generator=gen) < 0.2] = 255
    metric = SegmentationMetric(k)
    metric.update(pred, target)
    ours = metric.compute()
    iou = MulticlassJaccardIndex(k, average="none", ignore_index=255)(pred, target)
    miou = MulticlassJaccardIndex(k, average="macro", ignore_index=255)(pred, target)
    acc = MulticlassAccuracy(k, average="none", ignore_index=255)(pred, target)
    micro = MulticlassAccuracy(k, average="micro", ignore_index=255)(pred, target)
    assert ours["iou"] == pytest.approx((100 * iou).tolist(), abs=1e-4)
    assert ours["miou"] == pytest.approx(100 * float(miou), abs=1e-4)
    assert ours["class_acc"] == pytest.approx((100 * acc).tolist(), abs=1e-4)
    assert ours["acc"] == pytest.approx(100 * float(micro), abs=1e-4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shards():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (5, 9, 7), generator=gen)
    target[:, :2] = 255
    pred = torch.randint(0, 5, (5, 9, 7), generator=gen)
    # a padding sampler over 2 ranks: rank 0 gets 0, 2, 4; rank 1 gets 1, 3 and sample 0 again, flagged invalid
    return pred, target, {0: ([0, 2, 4], [True, True, True]), 1: ([1, 3, 0], [True, True, False])}


def _worker(rank: int, port: int, out: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        pred, target, shards = _shards()
        index, valid = shards[rank]
        metric = SegmentationMetric(5)
        metric.update(pred[index], target[index], valid=torch.tensor(valid))
        result = metric.reduce().reduce().compute()  # reduce is idempotent
        with open(f"{out}.{rank}", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_reduction_equals_the_single_process_metric(tmp_path):
    pred, target, _ = _shards()
    single = SegmentationMetric(5)
    single.update(pred, target)
    expected = single.reduce().compute()  # no process group: reduce is a no-op
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path / "metric")), nprocs=2, start_method=START_METHOD)
    for rank in range(2):
        result = json.loads((tmp_path / f"metric.{rank}").read_text())
        assert result["pixels"] == expected["pixels"]
        assert result["miou"] == pytest.approx(expected["miou"])
        assert result["iou"] == pytest.approx(expected["iou"])
        assert result["acc"] == pytest.approx(expected["acc"])
