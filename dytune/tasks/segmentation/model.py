"""Semantic segmentation on a (dynamic) timm backbone: a pyramid of feature maps, a UperNet head, an FCN auxiliary
head.

The layout follows the DyT paper's setting (UperNet on ViT-B/16, BEiT-style neck): features of four blocks of a
single-stage backbone (ViT, Eva) are read with timm's `forward_intermediates`, resampled to strides 4/8/16/32 of the
image by transposed convolutions, an identity and max pooling, and fused by pyramid pooling + FPN. A hierarchical
backbone (Swin) already has that pyramid: its stage outputs at strides 4/8/16/32, each layer-normalised (as
mmsegmentation's Swin + UperNet), feed the head directly. Skipped tokens of a DyT backbone keep their features
(they only miss the MLP), so every patch still has a feature map entry.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones import backbone_for

__all__ = [
    "ConvModule", "FeaturePyramidNeck", "StageNorms", "PyramidPoolingModule", "UPerHead", "FCNHead", "Segmenter",
    "SegmentationLoss", "default_out_indices", "pixel_cross_entropy", "pixel_distillation", "resize", "slide_inference", "sync_batchnorm",
    "whole_inference",
]

NormLayer = Optional[Callable[[int], nn.Module]]
IntPair = Union[int, Tuple[int, int]]


def _pair(value: IntPair, name: str) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{name}={value!r}: expected a positive int or a pair of them")
    return pair  # type: ignore[return-value]


def resize(x: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of [B, C, H, W] maps to `size`; a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


class ConvModule(nn.Sequential):
    """Conv2d -> norm -> activation, as mmcv's ConvModule (the conv has a bias only without a norm).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel side.
        padding: Zero padding on each side.
        dilation: Kernel dilation.
        norm_layer: Called with the channel count (BatchNorm2d by default); None for no norm.
        act_layer: Activation class; None for none.
    """

    def __init__(
            self, in_channels: int, out_channels: int, kernel_size: int = 1, padding: int = 0, dilation: int = 1,
            norm_layer: NormLayer = nn.BatchNorm2d, act_layer: Optional[Callable[[], nn.Module]] = nn.ReLU,
    ) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                         bias=norm_layer is None)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        layers: List[nn.Module] = [conv]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)


def _resampler(channels: int, factor: float, norm_layer: NormLayer, act_layer: Callable[[], nn.Module]) -> nn.Module:
    """Resample a map by `factor` (> 1 up, < 1 down): 2x transposed convs (norm + act between), one transposed conv
    for other integer factors, identity, or max pooling."""
    if factor == 1:
        return nn.Identity()
    if factor < 1:
        return nn.MaxPool2d(kernel_size=round(1 / factor), stride=round(1 / factor))
    steps = int(math.log2(factor))
    if 2 ** steps != factor:
        return nn.ConvTranspose2d(channels, channels, kernel_size=int(factor), stride=int(factor))
    layers: List[nn.Module] = []
    for i in range(steps):
        if i:
            if norm_layer is not None:
                layers.append(norm_layer(channels))
            layers.append(act_layer())
        layers.append(nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class FeaturePyramidNeck(nn.Module):
    """Turn ViT feature maps at the patch stride into a pyramid at `strides` relative to the image.

    For patch 16 and strides (4, 8, 16, 32) this is the BEiT/DyT neck: ConvT(2, s2) -> norm -> GELU -> ConvT(2, s2),
    ConvT(2, s2), identity, MaxPool(2). Other patch sizes get the factors patch / stride (patch 8: ConvT(2, s2),
    identity, MaxPool(2), MaxPool(4)).

    Args:
        embed_dim: Channels of the ViT features (kept at every level).
        patch_size: The backbone's patch size (its feature stride).
        strides: Output stride of each level; each must divide the patch size or be a multiple of it.
        norm_layer: Norm between two stacked transposed convs (BatchNorm2d as BEiT); None as the official DyT code.
        act_layer: Activation between two stacked transposed convs.
    """

    def __init__(
            self, embed_dim: int, patch_size: int, strides: Sequence[int] = (4, 8, 16, 32),
            norm_layer: NormLayer = nn.BatchNorm2d, act_layer: Callable[[], nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        if not strides:
            raise ValueError("FeaturePyramidNeck: strides is empty; expected e.g. (4, 8, 16, 32)")
        for stride in strides:
            if stride <= 0 or (patch_size % stride and stride % patch_size):
                raise ValueError(
                    f"FeaturePyramidNeck: stride {stride} with patch size {patch_size}: the neck resamples by integer "
                    f"factors, so each stride must divide {patch_size} or be a multiple of it")
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.strides = tuple(strides)
        self.levels = nn.ModuleList(
            _resampler(embed_dim, patch_size / s, norm_layer, act_layer) for s in self.strides)

    @property
    def out_channels(self) -> List[int]:
        return [self.embed_dim] * len(self.strides)

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        if len(features) != len(self.levels):
            raise ValueError(f"FeaturePyramidNeck: got {len(features)} feature maps, expected {len(self.levels)} "
                             f"(one per stride {self.strides})")
        return [level(x) for level, x in zip(self.levels, features)]


class StageNorms(nn.Module):
    """The pyramid of a hierarchical backbone: its stage outputs at their own strides, each normalised over channels
    by a LayerNorm of its own (mmsegmentation's Swin adds these `norm{i}` for its out indices; timm's Swin normalises
    the last stage only, and the Segmenter prunes that norm).

    Args:
        channels: Channels of each stage's map, finest first.
        norm_layer: Called with a channel count; normalises the last dimension.
    """

    def __init__(self, channels: Sequence[int], norm_layer: Callable[[int], nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        if not channels:
            raise ValueError("StageNorms: channels is empty; expected one entry per stage, e.g. (128, 256, 512, 1024)")
        self.channels = tuple(channels)
        self.norms = nn.ModuleList(norm_layer(c) for c in self.channels)

    @property
    def out_channels(self) -> List[int]:
        return list(self.channels)

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        if len(features) != len(self.norms):
            raise ValueError(f"StageNorms: got {len(features)} feature maps, expected {len(self.norms)} (one per "
                             f"stage of channels {self.channels})")
        return [norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for norm, x in zip(self.norms, features)]


class PyramidPoolingModule(nn.ModuleList):
    """Average-pool a map to each of `pool_scales` squares, project each by a ConvModule, upsample back.

    Args:
        in_channels: Input channels.
        channels: Channels of each pooled branch.
        pool_scales: Output sides of the adaptive average pools.
        norm_layer: Norm of the ConvModules.
        align_corners: Of the bilinear upsampling.
    """

    def __init__(self, in_channels: int, channels: int, pool_scales: Sequence[int] = (1, 2, 3, 6),
                 norm_layer: NormLayer = nn.BatchNorm2d, align_corners: bool = False) -> None:
        super().__init__(nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(in_channels, channels, 1,
                                                                           norm_layer=norm_layer))
                         for s in pool_scales)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:  # type: ignore[override]
        return [resize(branch(x), x.shape[-2:], self.align_corners) for branch in self]


class _DecodeHead(nn.Module):
    """Dropout2d + 1x1 classifier shared by the heads (mmseg's `cls_seg`)."""

    def __init__(self, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"{type(self).__name__}: num_classes={num_classes}; expected at least 1")
        self.num_classes = num_classes
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(x))


class UPerHead(_DecodeHead):
    """UperNet decoder: pyramid pooling on the coarsest map, FPN top-down fusion, concatenation at the finest stride.

    Args:
        in_channels: Channels of each input level, finest first.
        num_classes: Output classes.
        channels: Width of every internal ConvModule (768 in the DyT config, 512 in mmseg's default).
        pool_scales: Pyramid pooling sides.
        dropout: Dropout2d before the classifier.
        norm_layer: Norm of the ConvModules (BatchNorm2d; see `sync_batchnorm` for DDP).
        align_corners: Of every bilinear resize.

    Returns from forward: logits [B, num_classes, H0, W0] at the finest input's resolution.
    """

    def __init__(
            self, in_channels: Sequence[int], num_classes: int, channels: int = 768,
            pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1, norm_layer: NormLayer = nn.BatchNorm2d,
            align_corners: bool = False,
    ) -> None:
        super().__init__(channels, num_classes, dropout)
        if len(in_channels) < 1:
            raise ValueError("UPerHead: in_channels is empty; expected one entry per pyramid level")
        self.in_channels = tuple(in_channels)
        self.align_corners = align_corners
        self.psp_modules = PyramidPoolingModule(in_channels[-1], channels, pool_scales, norm_layer, align_corners)
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3, padding=1,
                                     norm_layer=norm_layer)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1, norm_layer=norm_layer) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1, norm_layer=norm_layer)
                                       for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, padding=1, norm_layer=norm_layer)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"UPerHead: got {len(inputs)} maps, expected {len(self.in_channels)}")
        top = inputs[-1]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:], self.align_corners)
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = self.fpn_bottleneck(torch.cat([resize(x, size, self.align_corners) for x in outs], dim=1))
        return self.cls_seg(fused)


class FCNHead(_DecodeHead):
    """FCN head (mmseg's FCNHead), used as the auxiliary head on one pyramid level.

    Args:
        in_channels: Input channels.
        num_classes: Output classes.
        channels: Width of the convolutions (256 in the DyT/BEiT config).
        num_convs: Stacked ConvModules (>= 1).
        kernel_size: Their kernel side.
        concat_input: Concatenate the input with the conv output before the classifier (False in the DyT config).
        dropout: Dropout2d before the classifier.
        dilation: Dilation of the convolutions.
        norm_layer: Norm of the ConvModules.
    """

    def __init__(
            self, in_channels: int, num_classes: int, channels: int = 256, num_convs: int = 1, kernel_size: int = 3,
            concat_input: bool = False, dropout: float = 0.1, dilation: int = 1,
            norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(channels, num_classes, dropout)
        if num_convs < 1:
            raise ValueError(f"FCNHead: num_convs={num_convs}; expected at least 1")
        padding = kernel_size // 2 * dilation
        self.convs = nn.Sequential(*(
            ConvModule(in_channels if i == 0 else channels, channels, kernel_size, padding, dilation, norm_layer)
            for i in range(num_convs)))
        self.conv_cat = ConvModule(in_channels + channels, channels, kernel_size, padding,
                                   norm_layer=norm_layer) if concat_input else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls_seg(out)


class Segmenter(nn.Module):
    """A timm backbone (plain or converted by `dytune.convert`) + a pyramid + UPerHead (+ FCN auxiliary head).

    The pyramid depends on the backbone's stages (`num_stages`, through the backbone protocol): a single-stage
    backbone (ViT, Eva) gives the maps of `out_indices` blocks on its patch grid, which a `FeaturePyramidNeck`
    resamples to `strides`; a hierarchical one (Swin) gives the outputs of its `out_indices` stages, already at their
    strides, which `StageNorms` normalises (as mmsegmentation's Swin + UperNet). The backbone is pruned in place to
    what the features need: blocks or stages after the last of `out_indices`, the final norm and the classifier are
    removed, so that every remaining parameter is used (DDP needs no `find_unused_parameters`). Inputs whose sides are
    not multiples of the patch size are zero-padded at the bottom and right and the logits cropped back. Other image
    sizes than the backbone's need `dynamic_img_size=True` (timm then resizes the position embedding bicubically, or
    builds Swin's shift masks, on the fly).

    Args:
        backbone: A backbone of a registered family (`dytune.backbones`), e.g. a timm VisionTransformer or Swin.
        num_classes: Output classes.
        out_indices: The pyramid levels, finest first: blocks of a single-stage backbone, stages of a hierarchical
            one. None: `default_out_indices(depth)` blocks ((3, 5, 7, 11) for 12), or every stage.
        channels: UPerHead width.
        aux: Build the FCN auxiliary head (trained with weight 0.4 by `SegmentationLoss`).
        aux_channels: FCN head width.
        aux_index: Pyramid level the auxiliary head reads (2 = stride 16; Swin's third stage).
        strides: Output strides of the pyramid levels. None: (4, 8, 16, 32) for a single-stage backbone, the stages'
            own strides for a hierarchical one (which are the only ones it accepts).
        pool_scales: UPerHead pyramid pooling sides.
        dropout: Dropout2d before both classifiers.
        neck_norm: Norm between stacked transposed convs of the neck (None = the official DyT code's neck).
        norm_layer: Norm of the heads' ConvModules.
        align_corners: Of every bilinear resize.

    Forward: images [B, C, H, W] -> logits [B, num_classes, H, W] in eval mode; (logits, aux_logits or None) in train
    mode, both at image size.
    """

    def __init__(
            self, backbone: nn.Module, num_classes: int, out_indices: Optional[Sequence[int]] = None,
            channels: int = 768, aux: bool = True, aux_channels: int = 256, aux_index: int = 2,
            strides: Optional[Sequence[int]] = None, pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1,
            neck_norm: NormLayer = nn.BatchNorm2d, norm_layer: NormLayer = nn.BatchNorm2d, align_corners: bool = False,
    ) -> None:
        super().__init__()
        family = backbone_for(backbone, "Segmenter")
        staged = family.num_stages > 1
        levels, unit = (family.num_stages, "stages") if staged else (family.depth, "blocks")
        if out_indices is None:
            out_indices = range(levels) if staged else default_out_indices(levels)
        indices = [i + levels if i < 0 else i for i in out_indices]
        if any(not 0 <= i < levels for i in indices):
            wanted = len(strides) if strides is not None else 4
            hint = "its pyramid levels are stages" if staged else \
                f"a depth-{levels} model could use e.g. {_spread(levels, wanted)}"
            raise ValueError(f"Segmenter: out_indices={tuple(out_indices)} outside the backbone's {levels} {unit} "
                             f"(0..{levels - 1}); {hint}")
        if staged:
            own = [_pair(family.stride(s), "stride")[0] for s in indices]
            if strides is not None and list(strides) != own:
                raise ValueError(f"Segmenter: strides={tuple(strides)}, but the {family.family} backbone's stages "
                                 f"{tuple(indices)} have strides {tuple(own)}; a hierarchical backbone's pyramid is its "
                                 f"stages (leave strides unset)")
            strides = own
        strides = (4, 8, 16, 32) if strides is None else tuple(strides)
        if len(indices) != len(strides):
            raise ValueError(f"Segmenter: out_indices={tuple(out_indices)} has {len(indices)} entries but strides="
                             f"{tuple(strides)} has {len(strides)}; give one level per stride")
        if not 0 <= aux_index < len(strides):
            raise ValueError(f"Segmenter: aux_index={aux_index}; expected a pyramid level in 0..{len(strides) - 1}")
        patch_h, patch_w = _pair(family.stride(), "patch_size")
        if patch_h != patch_w:
            raise ValueError(f"Segmenter: non-square patches {(patch_h, patch_w)} are not supported")
        widths = [family.token_layout(family.stage_blocks(s)[-1]).dim for s in indices] if staged else None
        family.prune(indices)
        self.backbone = backbone
        self.num_classes = num_classes
        self.out_indices = tuple(indices)
        self.patch_size = patch_h
        self.aux_index = aux_index
        self.align_corners = align_corners
        if staged:
            self.neck: nn.Module = StageNorms(widths)
        else:
            self.neck = FeaturePyramidNeck(family.token_layout(0).dim, self.patch_size, strides, norm_layer=neck_norm)
        self.decode_head = UPerHead(self.neck.out_channels, num_classes, channels, pool_scales, dropout, norm_layer,
                                    align_corners)
        self.auxiliary_head = FCNHead(self.neck.out_channels[aux_index], num_classes, aux_channels, dropout=dropout,
                                      norm_layer=norm_layer) if aux else None

    def trainable_modules(self) -> List[nn.Module]:
        """The modules trained in every method (neck and heads); the backbone's trainable part is its own."""
        return [m for m in (self.neck, self.decode_head, self.auxiliary_head) if m is not None]

    def sync_batchnorm(self) -> "Segmenter":
        """Replace the BatchNorms of the neck and heads by SyncBatchNorm (call before wrapping in DDP)."""
        self.neck = nn.SyncBatchNorm.convert_sync_batchnorm(self.neck)
        self.decode_head = nn.SyncBatchNorm.convert_sync_batchnorm(self.decode_head)
        if self.auxiliary_head is not None:
            self.auxiliary_head = nn.SyncBatchNorm.convert_sync_batchnorm(self.auxiliary_head)
        return self

    def _check_input(self, images: torch.Tensor) -> None:
        family = backbone_for(self.backbone)
        channels = family.in_chans
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != channels:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f"Segmenter input: expected images of shape [B, {channels}, H, W], got {shape}")
        if not family.dynamic_size:
            size = family.image_size
            if tuple(images.shape[-2:]) != size:
                raise ValueError(
                    f"Segmenter input: the backbone takes {size[0]}x{size[1]} images, got "
                    f"{images.shape[-2]}x{images.shape[-1]}; create it with dynamic_img_size=True for other sizes")

    def forward_features(self, images: torch.Tensor) -> List[torch.Tensor]:
        """Backbone feature maps [B, C, H', W'] of the `out_indices` levels (blocks on the patch grid, or stages)."""
        return backbone_for(self.backbone).feature_maps(images, self.out_indices)

    def forward(self, images: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        self._check_input(images)
        height, width = images.shape[-2:]
        pad_h, pad_w = -height % self.patch_size, -width % self.patch_size
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        size = images.shape[-2:]
        pyramid = self.neck(self.forward_features(images))
        logits = resize(self.decode_head(pyramid), size, self.align_corners)[..., :height, :width]
        if not self.training:
            return logits
        aux = None
        if self.auxiliary_head is not None:
            aux = resize(self.auxiliary_head(pyramid[self.aux_index]), size, self.align_corners)[..., :height, :width]
        return logits, aux


def _spread(depth: int, levels: int) -> Tuple[int, ...]:
    """`levels` block indices spread over a depth-`depth` model, ending at the last block."""
    return tuple(sorted({max(0, round(depth * (i + 1) / levels) - 1) for i in range(levels)}))


def default_out_indices(depth: int, levels: int = 4) -> Tuple[int, ...]:
    """Blocks feeding the pyramid levels: the paper's (3, 5, 7, 11) for 12 blocks, else `levels` blocks spread
    evenly and ending at the last (a 6-block model: (1, 2, 3, 5))."""
    if depth == 12 and levels == 4:
        return 3, 5, 7, 11
    if depth < levels:
        raise ValueError(f"a {depth}-block backbone cannot feed {levels} pyramid levels from distinct blocks")
    return _spread(depth, levels)


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """BatchNorm -> SyncBatchNorm everywhere in `model` (a `Segmenter` converts only its neck and heads)."""
    if isinstance(model, Segmenter):
        return model.sync_batchnorm()
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _check_target(logits: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[0] != target.shape[0] \
            or logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"{name}: logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match; "
                         f"expected [B, K, H, W] and [B, H, W] (resize the logits to the label size first)")


def pixel_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy over the class dimension 1, averaged over the pixels whose label is not `ignore_index`.

    A batch with no labelled pixel gives 0 (with a gradient path), not NaN. (mmseg 0.20 averaged over all pixels,
    ignored ones counting 0; this is mmseg 1.x's `avg_non_ignore=True`.)

    Args:
        logits: [B, K, H, W].
        target: [B, H, W] int64 labels in 0..K-1 or `ignore_index`.
        ignore_index: Label of unlabelled pixels.
    """
    _check_target(logits, target, "pixel_cross_entropy")
    total = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    return total / (target != ignore_index).sum().clamp(min=1)


def pixel_distillation(
        student: torch.Tensor, teacher: torch.Tensor, target: Optional[torch.Tensor] = None, ignore_index: int = 255,
        temperature: float = 1.0,
) -> torch.Tensor:
    """KL(teacher || student) over the class dimension, averaged over pixels (those labelled when `target` is given).

    The teacher is detached. With a temperature T both distributions are softened and the loss is scaled by T^2.

    Args:
        student: [B, K, H, W] logits of the dynamic model.
        teacher: [B, K, H, W] logits of the complete model.
        target: Optional [B, H, W] labels; pixels equal to `ignore_index` are skipped.
        ignore_index: Label of unlabelled pixels.
        temperature: Softening temperature T > 0.
    """
    if student.shape != teacher.shape or student.ndim != 4:
        raise ValueError(f"pixel_distillation: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} "
                         f"must both be [B, K, H, W]")
    if not temperature > 0:
        raise ValueError(f"pixel_distillation: temperature={temperature!r}; expected a value > 0")
    log_s = F.log_softmax(student.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher.detach().float() / temperature, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=1)
    if target is None:
        return kl.mean() * temperature ** 2
    _check_target(student, target, "pixel_distillation")
    valid = target != ignore_index
    return (kl * valid).sum() / valid.sum().clamp(min=1) * temperature ** 2


class SegmentationLoss(nn.Module):
    """CE of the main logits + aux_weight * CE of the auxiliary logits, both over labelled pixels only.

    Args:
        aux_weight: Weight of the auxiliary head's CE (0.4 as mmseg's UperNet configs).
        ignore_index: Label of unlabelled pixels.

    Forward: (outputs, target) -> (total, parts) with outputs the Segmenter's train-mode (logits, aux) or a single
    logits tensor; parts holds detached `ce` and `aux_ce` (when there is an aux output).
    """

    def __init__(self, aux_weight: float = 0.4, ignore_index: int = 255) -> None:
        super().__init__()
        if aux_weight < 0:
            raise ValueError(f"SegmentationLoss: aux_weight={aux_weight!r}; expected a value >= 0")
        self.aux_weight = aux_weight
        self.ignore_index = ignore_index

    def forward(
            self, outputs: Union[torch.Tensor, Tuple[torch.Tensor, Optional[torch.Tensor]]], target: torch.Tensor,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        logits, aux = (outputs, None) if torch.is_tensor(outputs) else outputs
        ce = pixel_cross_entropy(logits, target, self.ignore_index)
        parts = {"ce": ce.detach()}
        total = ce
        if aux is not None and self.aux_weight:
            aux_ce = pixel_cross_entropy(aux, target, self.ignore_index)
            parts["aux_ce"] = aux_ce.detach()
            total = total + self.aux_weight * aux_ce
        return total, parts


def _logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    out = model(images)
    return out[0] if isinstance(out, (tuple, list)) else out


def _check_logits(logits: torch.Tensor, images: torch.Tensor, num_classes: Optional[int]) -> None:
    expected = (images.shape[0], num_classes if num_classes is not None else logits.shape[1], *images.shape[-2:])
    if tuple(logits.shape) != expected:
        raise ValueError(f"the model returned logits {tuple(logits.shape)} for images {tuple(images.shape)}; expected "
                         f"{expected} (num_classes={num_classes})")


@torch.no_grad()
def whole_inference(model: nn.Module, images: torch.Tensor, num_classes: Optional[int] = None,
                    output_size: Optional[Sequence[int]] = None, align_corners: bool = False) -> torch.Tensor:
    """Logits of the whole images in one forward, resized bilinearly to `output_size` (e.g. the label's size).

    Args:
        model: Maps images [B, C, H, W] to logits [B, K, H, W] (a Segmenter in eval mode).
        images: The batch.
        num_classes: K, checked against the model's output when given.
        output_size: (H', W') of the returned logits; the input size by default.
        align_corners: Of the final resize.
    """
    logits = _logits(model, images)
    _check_logits(logits, images, num_classes)
    return logits if output_size is None else resize(logits, output_size, align_corners)


@torch.no_grad()
def slide_inference(
        model: nn.Module, images: torch.Tensor, num_classes: int, crop: IntPair = 512, stride: IntPair = 341,
        output_size: Optional[Sequence[int]] = None, align_corners: bool = False,
) -> torch.Tensor:
    """Sliding-window logits: overlapping `crop` windows every `stride` pixels, logits averaged where they overlap.

    Windows are placed as mmseg does (the last one in each direction flush with the border). An image side smaller
    than the crop is zero-padded to it (bottom / right) and the logits cropped back, so every window has the crop's
    shape.

    Args:
        model: Maps images [B, C, h, w] to logits [B, K, h, w] (a Segmenter in eval mode).
        images: The batch [B, C, H, W].
        num_classes: K.
        crop: Window (h, w) or side.
        stride: Step (h, w) or side between windows.
        output_size: (H', W') of the returned logits; the input size by default.
        align_corners: Of the final resize.

    Returns:
        Logits [B, K, H, W] (or at `output_size`).
    """
    (crop_h, crop_w), (step_h, step_w) = _pair(crop, "crop"), _pair(stride, "stride")
    if step_h > crop_h or step_w > crop_w:
        raise ValueError(f"slide_inference: stride {(step_h, step_w)} exceeds crop {(crop_h, crop_w)}; windows would "
                         f"leave gaps")
    batch, _, height, width = images.shape
    pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))
    full_h, full_w = images.shape[-2:]
    rows = max(full_h - crop_h + step_h - 1, 0) // step_h + 1
    cols = max(full_w - crop_w + step_w - 1, 0) // step_w + 1
    logits = images.new_zeros(batch, num_classes, full_h, full_w, dtype=torch.float32)
    count = images.new_zeros(1, 1, full_h, full_w, dtype=torch.float32)
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * step_h + crop_h, full_h), min(c * step_w + crop_w, full_w)
            y1, x1 = y2 - crop_h, x2 - crop_w
            window = images[:, :, y1:y2, x1:x2]
            out = _logits(model, window)
            _check_logits(out, window, num_classes)
            logits[:, :, y1:y2, x1:x2] += out.float()
            count[:, :, y1:y2, x1:x2] += 1
    logits = (logits / count)[..., :height, :width]
    return logits if output_size is None else resize(logits, output_size, align_corners)
