"""timm's `SwinTransformer` family (Swin v1: `swin_*_patch4_window*`, `swin_s3_*`): four stages of pre-norm
`SwinTransformerBlock`s on token grids of strides 4, 8, 16 and 32, the first after the patch embedding and each later
one after a patch merging; attention within (shifted) windows with a relative position bias, no class token, average
pooling. Blocks take and return [B, H, W, C] tokens."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.swin_transformer import (SwinTransformer, SwinTransformerBlock, WindowAttention, window_partition,
                                          window_reverse)
from torch import nn

from .base import AttentionCounter, BlockParts, StagedBlocks, TokenLayout, register_backbone
from .timm_common import TimmBackbone

__all__ = ["ShiftedWindows", "TimmSwin"]


def _window_attention_macs(module: nn.Module, inputs: tuple, output: Any) -> int:
    windows, area, _ = inputs[0].shape  # [B * windows, window area, C]
    return windows * 2 * area * area * (module.qkv.out_features // 3)


class ShiftedWindows(nn.Module):
    """Where a Swin block's attention runs, as timm's `SwinTransformerBlock` runs it: the [B, H, W, C] grid is rolled
    by -`shift_size` (every other block), padded to whole windows, split into windows that attend within themselves
    (across the roll's seams only where the shift mask allows), and put back.

    The dytune block adopts it as its `windows` part; it holds no parameters (the attention stays the block's `attn`,
    under timm's keys), only the window geometry and timm's shift mask as a non-persistent buffer.

    Args:
        block: The timm block whose window geometry is taken.
    """

    def __init__(self, block: SwinTransformerBlock) -> None:
        super().__init__()
        self.window_size: Tuple[int, int] = tuple(block.window_size)
        self.shift_size: Tuple[int, int] = tuple(block.shift_size)
        self.window_area = block.window_area
        self.input_resolution = tuple(block.input_resolution)
        self.dynamic_mask = bool(getattr(block, "dynamic_mask", False))  # a mask per input size (dynamic_img_size)
        self.register_buffer("attn_mask", block.attn_mask, persistent=False)

    # timm's own shift mask for a padded grid (it reads window_size, shift_size, window_area, input_resolution)
    get_attn_mask = SwinTransformerBlock.get_attn_mask

    def padded(self, grid: Tuple[int, int]) -> Tuple[int, int]:
        """The grid padded to whole windows."""
        return tuple(-(-g // w) * w for g, w in zip(grid, self.window_size))

    def forward(self, attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """`attn` over the windows of x, [B, H, W, C] -> [B, H, W, C_out]."""
        _, height, width, dim = x.shape
        shifted = any(self.shift_size)
        if shifted:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        padded_h, padded_w = self.padded((height, width))
        x = F.pad(x, (0, 0, 0, padded_w - width, 0, padded_h - height))
        mask = self.get_attn_mask(x) if self.dynamic_mask else self.attn_mask
        out = attn(window_partition(x, self.window_size).view(-1, self.window_area, dim), mask=mask)
        out = out.view(-1, self.window_size[0], self.window_size[1], out.shape[-1])
        out = window_reverse(out, self.window_size, padded_h, padded_w)[:, :height, :width].contiguous()
        return torch.roll(out, shifts=self.shift_size, dims=(1, 2)) if shifted else out

    def macs(self, attn: nn.Module, grid: Tuple[int, int]) -> int:
        """MACs per image of `attn` over the windows of a `grid` (padding included: the padded tokens are computed):
        its Linear layers per token and q @ k, attention @ v within each window."""
        rows, cols = self.padded(grid)
        tokens = rows * cols
        linear = sum(m.in_features * m.out_features for m in attn.modules() if isinstance(m, nn.Linear))
        return tokens * (linear + 2 * self.window_area * (attn.qkv.out_features // 3))

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, shift_size={self.shift_size}, dynamic_mask={self.dynamic_mask}"


@register_backbone
class TimmSwin(TimmBackbone):
    """A timm `SwinTransformer` (Swin v1) with pre-norm `SwinTransformerBlock`s. Block indices run over all stages
    (`stage_blocks(stage)`); `feature_maps` and `prune` take stage indices."""

    family = "timm_swin"
    description = "timm SwinTransformer (Swin v1; e.g. timm.create_model('swin_base_patch4_window7_224'))"
    architecture_keys = ("embed_dim", "depths", "num_heads", "window_size")
    token_merging_refusal = ("attention runs within windows of a fixed token grid and patch merging joins 2x2 "
                             "neighbours, which merged tokens no longer have")
    attention_dispatch_refusal = ("its attention runs within (shifted) windows of the token grid with a relative "
                                  "position bias, and the attention variants gather the kept tokens of an image "
                                  "across windows")

    @classmethod
    def accepts(cls, model: nn.Module) -> bool:
        return isinstance(model, SwinTransformer)

    @classmethod
    def attention_counters(cls) -> Dict[Type[nn.Module], AttentionCounter]:
        return {WindowAttention: _window_attention_macs}

    # ---- blocks and stages -------------------------------------------------------------------------------------
    @property
    def blocks(self) -> StagedBlocks:
        return StagedBlocks([stage.blocks for stage in self.model.layers])

    @property
    def num_stages(self) -> int:
        return len(self.model.layers)

    def stage_blocks(self, stage: int) -> range:
        self._check_stage(stage)
        start = sum(len(s.blocks) for s in self.model.layers[:stage])
        return range(start, start + len(self.model.layers[stage].blocks))

    def _check_stage(self, stage: int) -> None:
        if not 0 <= stage < self.num_stages:
            raise ValueError(f"stage={stage}: this {type(self.model).__name__} has stages 0..{self.num_stages - 1}")

    def _stage_of(self, index: int) -> int:
        index %= self.depth
        return next(s for s in range(self.num_stages) if index in self.stage_blocks(s))

    def check_block(self, index: int) -> None:
        block = self.blocks[index]
        if type(block) is not SwinTransformerBlock:  # a subclass may change the forward the dytune block replaces
            raise TypeError(f"block {index} is a {type(block).__name__}; dytune supports timm's pre-norm "
                            f"swin_transformer.SwinTransformerBlock only")
        if type(block.attn) is not WindowAttention or type(block.mlp) is not Mlp:
            raise TypeError(f"block {index}: attention {type(block.attn).__name__}, MLP {type(block.mlp).__name__}; "
                            f"expected timm WindowAttention and Mlp")

    def block_parts(self, index: int) -> BlockParts:
        self.check_block(index)
        block = self.blocks[index]
        return BlockParts(block.norm1, block.attn, nn.Identity(), block.drop_path1, block.norm2, block.mlp,
                          nn.Identity(), block.drop_path2, windows=ShiftedWindows(block))

    def token_layout(self, index: int) -> TokenLayout:
        block = self.blocks[index]  # (raises IndexError naming the depth) a timm or a dytune block: both have `dim`
        return TokenLayout(0, block.dim, block.attn.num_heads, self._stage_of(index))

    def position_dependent_attention(self, index: int) -> bool:
        return True  # relative position bias per window position, shift masks

    def subset_attention(self, index: int) -> bool:
        return False

    # ---- input and grid ----------------------------------------------------------------------------------------
    def stride(self, stage: int = 0) -> Tuple[int, int]:
        self._check_stage(stage)
        return tuple(p * 2 ** stage for p in self.model.patch_embed.patch_size)

    def grid(self, size: Tuple[int, int], stage: int = 0) -> Tuple[int, int]:
        self._check_stage(stage)
        rows, cols = self.model.patch_embed.dynamic_feat_size(tuple(size))
        for _ in range(stage):  # patch merging pads odd grids by one row or column
            rows, cols = (rows + 1) // 2, (cols + 1) // 2
        return rows, cols

    # ---- outputs -----------------------------------------------------------------------------------------------
    @property
    def pooling(self) -> str:
        return self.model.global_pool

    @property
    def num_features(self) -> int:
        return self.model.num_features

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(images).flatten(1, 2)  # [B, H, W, C] -> [B, N, C]

    def feature_maps(self, images: torch.Tensor, indices: Sequence[int]) -> List[torch.Tensor]:
        return super().feature_maps(images, self._stages(indices))

    def prune(self, indices: Sequence[int]) -> None:
        super().prune(self._stages(indices))

    def _stages(self, indices: Sequence[int]) -> List[int]:
        stages = [i + self.num_stages if i < 0 else i for i in indices]
        if not stages or any(not 0 <= s < self.num_stages for s in stages):
            raise ValueError(f"indices={list(indices)}: expected stage indices of this {type(self.model).__name__}, "
                             f"0..{self.num_stages - 1} (its {self.depth} blocks are not feature levels)")
        return stages

    def classifier_heads(self) -> Tuple[nn.Module, ...]:
        return (self.model.get_classifier(),)

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def architecture(self) -> Dict[str, Any]:
        cfg = getattr(self.model, "pretrained_cfg", None) or {}
        stages = [self.stage_blocks(s) for s in range(self.num_stages)]
        return {
            "architecture": cfg.get("architecture"),
            "tag": cfg.get("tag"),
            "embed_dim": [self.token_layout(b[0]).dim for b in stages],
            "depths": [len(b) for b in stages],
            "num_heads": [self.token_layout(b[0]).num_heads for b in stages],
            "window_size": [list(self.blocks[b[0]].attn.window_size) for b in stages],
            "patch_size": list(self.model.patch_embed.patch_size),
        }

    def adapt_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        from timm.models.swin_transformer import checkpoint_filter_fn

        return checkpoint_filter_fn(state, self.model)
