"""Token merging (ToMe) for timm ViTs and dytune models: the algorithm (`merge`) and its integration (`patch`)."""
from .merge import Matching, bipartite_soft_matching
from .patch import ToMeState, apply_tome, set_r

__all__ = ["Matching", "bipartite_soft_matching", "ToMeState", "apply_tome", "set_r"]
