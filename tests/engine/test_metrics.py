import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dytune.tasks.classification.data import build_dataset
from dytune.engine import TrainConfig, evaluate
from dytune.utils.distributed import DistEnv, ShardSampler
from dytune.engine.optim import lr_at


class Lookup(torch.nn.Module):
    """Predicts the class stored in the first pixel."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()


def test_accuracy_and_mean_per_class_accuracy():
    predicted = torch.tensor([0, 0, 0, 1, 1, 1])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    images = predicted.float()[:, None, None, None].expand(-1, 3, 4, 4).contiguous()
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    m = evaluate(Lookup(), loader, DistEnv(), num_classes=3, precision="fp32", progress=False)
    assert m["images"] == 6
    assert m["acc"] == pytest.approx(500 / 6)
    assert m["mean_per_class_acc"] == pytest.approx(87.5)  # classes absent from the set do not count as 0 %


def test_shards_cover_every_image_once():
    shards = [list(ShardSampler(10, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(10))


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    assert lr_at(0, 100, 10, 1.0, 0.1) == pytest.approx(0.1)  # the first step already trains
    assert lr_at(4, 100, 10, 1.0, 0.1) == pytest.approx(0.5)
    assert lr_at(9, 100, 10, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0, 0.1) == pytest.approx(0.55)
    assert lr_at(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_missing_torchvision_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar100 under .*download=true"):
        build_dataset(TrainConfig(dataset="cifar100", data_root=str(tmp_path)), train=True)
