"""Building blocks of dynamic tuning: dispatcher, adapters, dynamic blocks and batched token selection."""
from .adapter import Adapter, MoEAdapter, build_adapter
from .blocks import (
    BLOCK_VARIANTS,
    EXECUTION_MODES,
    AttnDispatchBlock,
    AttnMLPDispatchBlock,
    DynamicBlock,
    LayerDispatchBlock,
    MLPDispatchBlock,
)
from .dispatcher import TokenDispatcher, gumbel_sigmoid

__all__ = [
    "Adapter", "MoEAdapter", "build_adapter", "TokenDispatcher", "gumbel_sigmoid", "DynamicBlock", "MLPDispatchBlock",
    "AttnDispatchBlock", "AttnMLPDispatchBlock", "LayerDispatchBlock", "BLOCK_VARIANTS", "EXECUTION_MODES",
]
