"""Backbone families dytune converts, behind one protocol: `base.py` holds the contract (`Backbone`) and the
registry (`register_backbone`, `backbone_for`, `find_backbone`); `timm_vit.py` is timm's VisionTransformer family.
A further family is one module implementing `Backbone`, imported here."""
from .base import (PLANNED_FAMILIES, AttentionCounter, Backbone, BlockParts, TokenLayout, backbone_families,
                   backbone_for, find_backbone, is_backbone, register_backbone)
from .timm_vit import TimmViT

__all__ = ["Backbone", "BlockParts", "TokenLayout", "AttentionCounter", "PLANNED_FAMILIES", "TimmViT",
           "register_backbone", "backbone_families", "backbone_for", "find_backbone", "is_backbone"]
