"""Backbone families dytune converts, behind one protocol: `base.py` holds the contract (`Backbone`) and the
registry (`register_backbone`, `backbone_for`, `find_backbone`); `timm_common.py` what timm's vision transformers
share; `timm_vit.py` is timm's VisionTransformer family, `timm_eva.py` timm's Eva family (DINOv3, EVA-02,
Perception Encoder), `timm_swin.py` timm's Swin Transformer (v1, four stages, window attention).
A further family is one module implementing `Backbone`, imported here."""
from .base import (PLANNED_FAMILIES, AttentionCounter, Backbone, BlockParts, BorrowedScale, StagedBlocks, TokenLayout,
                   backbone_families, backbone_for, find_backbone, is_backbone, register_backbone)
from .timm_vit import TimmViT  # registered first: messages and backbone_families() list the families in this order
from .timm_eva import TimmEva
from .timm_swin import TimmSwin

__all__ = ["Backbone", "BlockParts", "BorrowedScale", "StagedBlocks", "TokenLayout", "AttentionCounter",
           "PLANNED_FAMILIES", "TimmViT", "TimmEva", "TimmSwin", "register_backbone", "backbone_families", "backbone_for",
           "find_backbone", "is_backbone"]
