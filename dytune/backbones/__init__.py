"""Backbone families dytune converts, behind one protocol: `base.py` holds the contract (`Backbone`) and the
registry (`register_backbone`, `backbone_for`, `find_backbone`); `timm_common.py` what timm's single-stage ViT-like
classes share; `timm_vit.py` is timm's VisionTransformer family, `timm_eva.py` timm's Eva family (DINOv3, EVA-02,
Perception Encoder).
A further family is one module implementing `Backbone`, imported here."""
from .base import (PLANNED_FAMILIES, AttentionCounter, Backbone, BlockParts, BorrowedScale, TokenLayout,
                   backbone_families, backbone_for, find_backbone, is_backbone, register_backbone)
from .timm_vit import TimmViT  # registered first: messages and backbone_families() list the families in this order
from .timm_eva import TimmEva

__all__ = ["Backbone", "BlockParts", "BorrowedScale", "TokenLayout", "AttentionCounter", "PLANNED_FAMILIES", "TimmViT",
           "TimmEva",
           "register_backbone", "backbone_families", "backbone_for", "find_backbone", "is_backbone"]
