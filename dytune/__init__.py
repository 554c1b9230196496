"""dytune: Dynamic Tuning (DyT) of timm Vision Transformers: parameter-efficient and faster at inference."""
from .version import __version__

from .core.calibrate import calibrate
from .core.capacity import capacities, plan_capacity, set_capacity
from .core.checkpoint import create_model, from_pretrained, load_backbone_weights, save_pretrained
from .core.config import VARIANTS, DyTConfig
from .core.convert import (convert, converted_config, dynamic_blocks, execution, is_converted, keep_masks,
                           keep_rates, logits_only, set_tau, set_tau_progress)
from .core.flops import count_macs, dynamic_macs
from .core.loss import DynamicObjective, DyTLoss
from . import models  # noqa: F401  (registers dytune_mini_vit with timm)
from .utils import moved

moved.install()

__all__ = [
    "__version__", "DyTConfig", "VARIANTS", "convert", "converted_config", "is_converted", "execution",
    "dynamic_blocks", "keep_masks", "keep_rates", "logits_only", "set_tau", "set_tau_progress", "DyTLoss",
    "DynamicObjective", "count_macs", "dynamic_macs", "save_pretrained",
    "from_pretrained", "create_model", "load_backbone_weights", "calibrate",
    "plan_capacity", "set_capacity", "capacities",
]
