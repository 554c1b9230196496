import pytest
import timm
import torch

import dytune  # noqa: F401  (registers dytune_mini_vit)
from dytune.pretrained import ASSETS, mini_vit


def test_shipped_backbone_is_a_timm_model():
    if not (ASSETS / "mini_vit.json").is_file():
        with pytest.raises(FileNotFoundError, match="not shipped"):
            timm.create_model("dytune_mini_vit", pretrained=True)
        pytest.skip("the mini backbone is not in this copy")
    model = timm.create_model("dytune_mini_vit", pretrained=True, num_classes=7)
    reference = mini_vit()
    own = model.state_dict()
    for k, v in reference.state_dict().items():
        if not k.startswith("head"):
            assert torch.equal(own[k], v), k
    assert model.head.out_features == 7 and model.pretrained_cfg["mean"] == reference.pretrained_cfg["mean"]
