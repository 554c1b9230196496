"""The backbone protocol: what dytune needs from a family of vision transformers, and the registry of families.

A family is one `Backbone` subclass registered with `register_backbone`. An instance wraps one model of the family
(`backbone_for(model)`) and answers every question the core asks of it: its blocks and the sub-modules a dynamic
block adopts, the token layout and grid of each block, the input it takes, how it pools, its feature maps, its
classifier, the architecture a checkpoint records and the MACs of its attention outside dytune blocks.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Type, Union

import torch
from torch import nn

__all__ = ["Backbone", "BlockParts", "BorrowedScale", "StagedBlocks", "TokenLayout", "AttentionCounter",
           "register_backbone", "backbone_families", "backbone_for", "find_backbone", "is_backbone", "PLANNED_FAMILIES"]

PLANNED_FAMILIES = ("timm SwinTransformerV2 is not supported (its blocks normalise after attention and MLP, "
                    "res-post-norm, unlike a pre-norm dytune block), nor are convolutional models")

AttentionCounter = Callable[[nn.Module, tuple, Any], int]


class BlockParts(NamedTuple):
    """The sub-modules of a pre-norm block, `x + drop_path1(ls1(attn(norm1(x))))` then the same with norm2 and mlp,
    which a dytune block adopts under these names (so the backbone's state-dict keys stay those of the block).

    `attn` maps [B, N, C] to [B, N, C] and has the layout `dytune.core.flops.attention_macs` counts (qkv, q_norm, k_norm,
    proj, num_heads); `mlp` is token-wise.

    `windows` (None for global attention) is a parameter-free module for attention within local windows of the
    token grid (timm Swin's `ShiftedWindows`): `windows(attn, x)` runs `attn` over the windows of x [B, H, W, C] and
    returns [B, H, W, C], `windows.macs(attn, grid)` counts it per image. A block with windows takes and returns
    tokens as [B, H, W, C].
    """

    norm1: nn.Module
    attn: nn.Module
    ls1: nn.Module
    drop_path1: nn.Module
    norm2: nn.Module
    mlp: nn.Module
    ls2: nn.Module
    drop_path2: nn.Module
    windows: Optional[nn.Module] = None

    @classmethod
    def of(cls, block: nn.Module) -> "BlockParts":
        """The parts of a block that holds each required one under its name (timm's ViT `Block`); no windows."""
        return cls(*(getattr(block, name) for name in cls.required()))

    @classmethod
    def required(cls) -> Tuple[str, ...]:
        """The names of the parts every block has."""
        return tuple(name for name in cls._fields if name not in cls._field_defaults)


class BorrowedScale(nn.Module):
    """`gamma * x` for a LayerScale parameter that a block holds directly (timm Eva's `gamma_1`), as a `ls1`/`ls2`
    part. The parameter is not registered here: the dytune block adopting this part registers it under `name`, so the
    state-dict key stays the block's.

    Args:
        name: The parameter's attribute name in the block.
        gamma: The parameter.
    """

    def __init__(self, name: str, gamma: nn.Parameter) -> None:
        super().__init__()
        self.name = name
        self.__dict__["gamma"] = gamma  # bypasses nn.Module registration (see above)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * x

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dim={self.gamma.shape[0]}"


class StagedBlocks(Sequence):
    """The blocks of several stages as one list in execution order, for families whose blocks sit in per-stage
    containers (timm Swin's `layers[s].blocks`); assigning an entry replaces the block in its stage.

    Args:
        stages: Each stage's block container (`nn.Sequential` or `nn.ModuleList`), in execution order.
    """

    def __init__(self, stages: Sequence[Union[nn.Sequential, nn.ModuleList]]) -> None:
        self.stages = list(stages)

    def __len__(self) -> int:
        return sum(len(s) for s in self.stages)

    def _locate(self, index: int) -> Tuple[int, int]:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"block index {index!r}: expected an integer")
        depth = len(self)
        if not -depth <= index < depth:
            raise IndexError(f"block {index}: there are {depth} blocks (0..{depth - 1})")
        index %= depth
        for s, stage in enumerate(self.stages):
            if index < len(stage):
                return s, index
            index -= len(stage)
        raise AssertionError("unreachable")

    def __getitem__(self, index: int) -> nn.Module:
        s, j = self._locate(index)
        return self.stages[s][j]

    def __setitem__(self, index: int, block: nn.Module) -> None:
        s, j = self._locate(index)
        self.stages[s][j] = block


class TokenLayout(NamedTuple):
    """The tokens a block sees: `num_prefix_tokens` leading tokens (class, distillation, register; never skipped nor
    merged) then the patch tokens of the grid of `stage`, row-major, each `dim` wide, attended by `num_heads` heads."""

    num_prefix_tokens: int
    dim: int
    num_heads: int
    stage: int


class Backbone(ABC):
    """One model of a backbone family, seen through the questions dytune asks (the family's contract).

    Subclasses implement every abstract member and `accepts`, set `family` and `description`, and register with
    `register_backbone`. They hold no state of their own beyond `model`, so wrapping a model again is free.

    Args:
        model: A model of the family (`accepts(model)` is True).
    """

    family: ClassVar[str]  # registry key, e.g. "timm_vit"
    description: ClassVar[str]  # what the family covers, for the refusal message, e.g. "timm VisionTransformer (...)"
    architecture_keys: ClassVar[Tuple[str, ...]] = ()  # `architecture()` entries a checkpoint's base must match
    token_merging_refusal: ClassVar[str] = ""  # why `dytune.core.tome` cannot merge this family's tokens ("" if it can)
    attention_dispatch_refusal: ClassVar[str] = ""  # why attention dispatch is refused ("" to say it by position)

    def __init__(self, model: nn.Module) -> None:
        if not self.accepts(model):
            raise TypeError(f"{type(self).__name__} wraps {self.description}, got {type(model).__name__}")
        self.model = model

    @classmethod
    @abstractmethod
    def accepts(cls, model: nn.Module) -> bool:
        """Whether `model` belongs to this family (the registry asks every family, so it must be exact)."""

    @classmethod
    @abstractmethod
    def attention_counters(cls) -> Dict[Type[nn.Module], AttentionCounter]:
        """Module type -> MACs of its matrix products between tokens (q @ k, attention @ v) in one forward hook call
        (module, inputs, output). `count_macs` adds them for modules outside dytune blocks; their Linear layers
        and norms are counted by their own hooks."""

    # ---- blocks ------------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def blocks(self) -> Union[nn.ModuleList, StagedBlocks]:
        """Every transformer block in execution order, all stages concatenated (`StagedBlocks` when they sit in
        per-stage containers); the core replaces entries in place."""

    @abstractmethod
    def validate(self) -> None:
        """Raise if the model cannot be converted, naming the block and what was expected (warn on an untested
        library version)."""

    @abstractmethod
    def check_block(self, index: int) -> None:
        """Raise TypeError/RuntimeError unless block `index` is the family's plain (unconverted) block."""

    @abstractmethod
    def block_parts(self, index: int) -> BlockParts:
        """The sub-modules of block `index` that a dytune block adopts."""

    @abstractmethod
    def token_layout(self, index: int) -> TokenLayout:
        """The token layout block `index` sees (prefix tokens, width, heads, stage)."""

    @abstractmethod
    def position_dependent_attention(self, index: int) -> bool:
        """Whether block `index`'s attention depends on token positions it is given besides the tokens (rotary
        embeddings, relative position bias). False when positions are added to the tokens before the blocks, so that
        attention over any subset of tokens (attention dispatch) needs nothing else."""

    def subset_attention(self, index: int) -> bool:
        """Whether attention over a subset of block `index`'s tokens is exact in a dytune block (attention dispatch):
        its attention has no position inputs, or only per-patch rotary embeddings (the `rope` argument of the
        block's forward, row j for patch token j), which the dytune block gathers with the kept tokens."""
        return not self.position_dependent_attention(index)

    # ---- input and grid ----------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def stem(self) -> nn.Module:
        """The module that turns images into tokens (its forward pre-hook sees the images as the model got them)."""

    @property
    @abstractmethod
    def in_chans(self) -> int:
        """Image channels the model takes."""

    @property
    @abstractmethod
    def image_size(self) -> Tuple[int, int]:
        """The image size the model was built for."""

    @property
    @abstractmethod
    def dynamic_size(self) -> bool:
        """Whether the model takes other image sizes than `image_size`."""

    @abstractmethod
    def stride(self, stage: int = 0) -> Tuple[int, int]:
        """Pixels per token of `stage` (the patch size for stage 0)."""

    @abstractmethod
    def grid(self, size: Tuple[int, int], stage: int = 0) -> Tuple[int, int]:
        """The token grid (rows, columns) of `stage` for an input of `size` (height, width)."""

    @abstractmethod
    def check_input(self, images: Any) -> None:
        """Raise ValueError for images the model cannot take, saying what fits."""

    # ---- outputs -----------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def pooling(self) -> str:
        """How the classifier pools the last tokens: "token" when it reads the class token alone (so the last block
        only needs the prefix tokens' outputs), else the family's name for it (e.g. "avg", "map")."""

    @property
    @abstractmethod
    def num_features(self) -> int:
        """Width of the tokens `forward_tokens` returns."""

    @abstractmethod
    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The normalised tokens of the last block, [B, N, C] (prefix tokens first)."""

    @abstractmethod
    def feature_maps(self, images: torch.Tensor, indices: Sequence[int]) -> List[torch.Tensor]:
        """Feature maps [B, C_i, H_i, W_i] for dense prediction. `indices` are feature levels: blocks when the
        backbone has one stage (every block's output lies on the one grid), stages when it has several
        (`num_stages` > 1: stage s's output, `token_layout(stage_blocks(s)[-1]).dim` channels on the grid
        `grid(size, s)`, `stride(s)` pixels per token)."""

    @abstractmethod
    def prune(self, indices: Sequence[int]) -> None:
        """Drop, in place, what `feature_maps(.., indices)` does not use (later blocks or stages, final norm,
        classifier)."""

    @abstractmethod
    def classifier_heads(self) -> Tuple[nn.Module, ...]:
        """The classifier module(s), trained by every method."""

    @abstractmethod
    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one with `num_classes` outputs (0: no classifier)."""

    # ---- checkpoints -------------------------------------------------------------------------------------------
    @abstractmethod
    def architecture(self) -> Dict[str, Any]:
        """JSON-able description of the architecture, saved as the "backbone" entry of an adapter config."""

    @abstractmethod
    def adapt_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """A weight file's state dict mapped onto this model's keys (the family's published layouts, position
        embeddings resampled to the model's grid)."""

    def load_native(self, path: str) -> None:
        """Load a weight file in a format other than a state dict (e.g. a .npz); families with none refuse it."""
        raise ValueError(f"{path}: {self.family} backbones load state dicts (.pth/.pt/.bin/.safetensors) only")

    # ---- derived -----------------------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    @property
    def num_stages(self) -> int:
        """Stages: runs of blocks on token grids of decreasing resolution (`TokenLayout.stage`); 1 for a ViT."""
        return self.token_layout(self.depth - 1).stage + 1 if self.depth else 1

    def stage_blocks(self, stage: int) -> range:
        """The indices of the blocks of `stage` (consecutive)."""
        members = [i for i in range(self.depth) if self.token_layout(i).stage == stage]
        if not members:
            raise ValueError(f"stage={stage}: this {type(self.model).__name__} has stages 0..{self.num_stages - 1}")
        return range(members[0], members[-1] + 1)

    def architecture_mismatches(self, saved: Mapping[str, Any]) -> Dict[str, Tuple[Any, Any]]:
        """key -> (saved, actual) for every `architecture_keys` entry of `saved` that differs from this model's."""
        actual = self.architecture()
        return {k: (saved[k], actual[k]) for k in self.architecture_keys if k in saved and saved[k] != actual[k]}


_FAMILIES: Dict[str, Type[Backbone]] = {}


def register_backbone(cls: Type[Backbone]) -> Type[Backbone]:
    """Class decorator: add a backbone family to the registry, refusing a second family of the same name."""
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        raise TypeError(f"register_backbone expects a Backbone subclass, got {cls!r}")
    name = getattr(cls, "family", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__}: set the class attribute `family` to a non-empty name")
    if name in _FAMILIES:
        raise ValueError(f"backbone family {name!r} is already registered ({_FAMILIES[name].__qualname__}); "
                         f"pick another name")
    _FAMILIES[name] = cls
    return cls


def backbone_families() -> Dict[str, Type[Backbone]]:
    """The registered families, name -> class, in registration order."""
    return dict(_FAMILIES)


def _supported() -> str:
    return f"dytune supports {'; '.join(cls.description for cls in _FAMILIES.values())}; {PLANNED_FAMILIES}"


def backbone_for(model: nn.Module, who: str = "dytune") -> Backbone:
    """`model` seen through its family's protocol.

    Args:
        model: A backbone model (not a task model around one; see `find_backbone`).
        who: The caller, named in the refusal (e.g. "dytune.convert").

    Raises:
        TypeError: no registered family accepts `model`.
    """
    for cls in _FAMILIES.values():
        if cls.accepts(model):
            return cls(model)
    raise TypeError(f"{who}: {_supported()}; got {type(model).__name__}")


def is_backbone(model: nn.Module) -> bool:
    """Whether a registered family accepts `model`."""
    return any(cls.accepts(model) for cls in _FAMILIES.values())


def find_backbone(model: nn.Module) -> Backbone:
    """The backbone that is `model` or sits inside it (a task model around a backbone), first in module order."""
    for module in model.modules():
        if is_backbone(module):
            return backbone_for(module)
    raise TypeError(f"{type(model).__name__} holds no supported backbone ({_supported()})")
