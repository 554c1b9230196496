"""Token merging (ToMe) for timm ViTs and dytune models: the algorithm (`merge`) and its integration (`patch`)."""
from .merge import Matching, bipartite_soft_matching
from .patch import ToMeBlock, ToMeMerge, ToMeState, apply_tome, set_r, supports_proportional_attention

__all__ = ["Matching", "bipartite_soft_matching", "ToMeBlock", "ToMeMerge", "ToMeState", "apply_tome", "set_r",
           "supports_proportional_attention"]
