"""The two ends of the comparison: linear probing (a frozen backbone, the head alone trains) and full fine-tuning
(everything trains, at a tenth of the learning rate, as in the paper)."""
from __future__ import annotations

from torch import nn

from .base import Method, NoSettings, freeze_but_head, register_method


def unfreeze(model: nn.Module, settings: NoSettings) -> nn.Module:
    """Full fine-tuning: every parameter trains."""
    return model.requires_grad_(True)


register_method(Method("linear", freeze_but_head, caches_features=True))
register_method(Method("full", unfreeze, lr_scale=0.1))
