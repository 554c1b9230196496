"""The model a run builds: backbone weights, the task's head and the method."""
import pytest
import timm
import torch
from safetensors.torch import save_file

from dytune.engine.build import build_model
from dytune.tasks import build_task
from tests.engine.test_engine import TINY, config


def _backbone_file(tmp_path, num_classes: int):
    """A backbone weight file whose classifier has `num_classes` classes and recognisable values (all 1, bias 0.5)."""
    torch.manual_seed(0)
    backbone = timm.create_model(TINY["model"], img_size=TINY["img_size"], num_classes=num_classes,
                                 **TINY["model_kwargs"])
    with torch.no_grad():
        backbone.head.weight.fill_(1.0)
        backbone.head.bias.fill_(0.5)
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("source_classes", [3, 5])
def test_every_task_gets_a_new_head_whatever_the_class_count(tmp_path, source_classes):
    cfg = config(tmp_path, method="dyt", checkpoint_path=str(_backbone_file(tmp_path, source_classes)))
    model, _ = build_model(cfg, build_task(cfg), num_classes=3)
    head = model.get_classifier()
    assert head.out_features == 3
    assert torch.all(head.bias == 0)
    assert 0.005 < head.weight.std().item() < 0.015 and head.weight.abs().max().item() < 0.06


def test_pretrained_head_keeps_a_head_of_the_same_class_count(tmp_path):
    cfg = config(tmp_path, method="dyt", checkpoint_path=str(_backbone_file(tmp_path, 3)), pretrained_head=True)
    model, _ = build_model(cfg, build_task(cfg), num_classes=3)
    head = model.get_classifier()
    assert torch.all(head.weight == 1.0) and torch.all(head.bias == 0.5)
