"""The paper's torchvision datasets, read from files in each dataset's real on-disk format, through train and eval."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dytune.tasks.classification.data import MEAN_PER_CLASS, build_dataset, num_classes_of
from dytune.engine import TrainConfig, evaluate_run, train
from dytune.engine.build import read_run_meta
from tests.tasks.classification.torchvision_fixtures import WRITERS, accept_fake_checksums

TINY = dict(model="vit_tiny_patch16_224", img_size=32, num_workers=0, batch_size=8, warmup_epochs=1.0,
            model_kwargs=dict(patch_size=8, depth=2, embed_dim=48, num_heads=3))


def config(tmp_path, dataset: str) -> TrainConfig:
    return TrainConfig(**TINY, dataset=dataset, data_root=str(tmp_path / "data"), epochs=1,
                       output_dir=str(tmp_path / "run"))


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_real_format_trains_and_evaluates(tmp_path, monkeypatch, dataset):
    accept_fake_checksums(monkeypatch)
    expected = WRITERS[dataset](tmp_path / "data")
    cfg = config(tmp_path, dataset)

    eval_set = build_dataset(cfg, train=False)  # download=False, the files written above
    assert len(build_dataset(cfg, train=True)) == expected.train and len(eval_set) == expected.test
    assert num_classes_of(eval_set) == expected.num_classes
    image, label = eval_set[0]
    assert image.shape == (3, 32, 32) and isinstance(label, int)
    assert [eval_set[i][1] for i in range(len(eval_set))] == expected.test_labels

    results = train(cfg)
    metric = "mean_per_class_acc" if dataset in ("fgvc_aircraft", "oxford_iiit_pet", "flowers102") else "acc"
    assert (dataset in MEAN_PER_CLASS) == (metric == "mean_per_class_acc")
    assert results["metric"] == metric
    final = results["final"]
    assert final["images"] == expected.test and 0.0 <= final[metric] <= 100.0
    meta = read_run_meta(tmp_path / "run" / "last")
    assert meta["num_classes"] == expected.num_classes
    assert meta.get("classes") is None or len(meta["classes"]) == expected.num_classes

    again = evaluate_run(tmp_path / "run")  # dytune eval: the run rebuilt from its folder
    assert again["images"] == expected.test
    assert again[metric] == pytest.approx(final[metric]) and again["gmacs"] == pytest.approx(final["gmacs"])


@pytest.mark.parametrize("dataset", ["cifar100", "svhn", "flowers102"])
def test_md5_checked_formats_refuse_files_that_are_not_the_originals(tmp_path, dataset):
    """torchvision checks these files' md5 even with download=False; dytune says which dataset and where."""
    WRITERS[dataset](tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=rf"{dataset} under .*corrupted"):
        build_dataset(config(tmp_path, dataset), train=True)


def test_num_classes_of_every_label_container():
    # SVHN: a numpy array of labels, no class list (its truth value is ambiguous)
    assert num_classes_of(SimpleNamespace(labels=np.array([3, 0, 7, 7]))) == 8
    assert num_classes_of(SimpleNamespace(targets=torch.tensor([1, 4]))) == 5
    assert num_classes_of(SimpleNamespace(_labels=[0, 2])) == 3
    assert num_classes_of(SimpleNamespace(_samples=[("a.jpg", 5), ("b.jpg", 1)])) == 6  # Stanford Cars
    # the class list wins, also where a split has no image of the last classes (CIFAR-100, Flowers-102)
    assert num_classes_of(SimpleNamespace(classes=["a", "b", "c", "d"], targets=[0, 1])) == 4
    assert num_classes_of(SimpleNamespace(classes=np.array(["a", "b"]), labels=np.array([0, 1]))) == 2
    # a class list made from the split's own images (Oxford-IIIT Pet, DTD) may lack a class the labels name
    assert num_classes_of(SimpleNamespace(classes=["a", "c"], _labels=[0, 2])) == 3
    with pytest.raises(ValueError, match="class count"):
        num_classes_of(SimpleNamespace(classes=[], targets=[]))


def test_svhn_has_ten_digit_classes_whichever_digits_a_split_holds(tmp_path, monkeypatch):
    accept_fake_checksums(monkeypatch)
    WRITERS["svhn"](tmp_path / "data")  # digits 0 (stored as 10), 1, 2, 3 only
    data = build_dataset(config(tmp_path, "svhn"), train=True)
    assert num_classes_of(data) == 10 and data.classes == [str(d) for d in range(10)]
    assert sorted(set(int(t) for t in data.labels)) == [0, 1, 2, 3]
