"""Video classification with an image ViT: every frame through the (DyT) backbone, attentive pooling over all tokens.

As in the official DyT video model, frames are folded into the batch, so each frame gets its own class token, the
2-D position embedding and its own token dispatch; a learnable query then cross-attends over the tokens of all frames
(`AttentivePool`) and a linear head classifies the result. The pooling sees a set of tokens, so it is blind to frame
order unless `temporal_embed` adds a learnable embedding per frame index. `FramePool` pools each frame on its own and
concatenates the frames in order, so that the linear head can compare them.
"""
from __future__ import annotations

from typing import List, Optional, Set, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones import backbone_for

__all__ = ["AttentivePool", "FramePool", "VideoClassifier", "POOLS"]


class AttentivePool(nn.Module):
    """A learnable query cross-attends over tokens: [B, T, N, D] -> [B, D].

    Separate LayerNorms for query, key and value; q/k/v projections without bias plus learnable query and value
    biases (the key bias is zero); an output projection; no residual, no MLP. The query starts at zero, so the
    attention starts uniform.

    Args:
        dim: Token width D.
        num_heads: Attention heads; must divide dim.
        num_frames: Frames T (needed by `temporal_embed`).
        temporal_embed: Add a learnable embedding per frame index (zero-initialised) to the tokens before pooling.
        eps: LayerNorm epsilon.
    """

    def __init__(self, dim: int, num_heads: int = 12, num_frames: Optional[int] = None, temporal_embed: bool = False,
                 eps: float = 1e-6) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"AttentivePool: num_heads={num_heads} does not divide dim={dim}")
        if temporal_embed and not num_frames:
            raise ValueError("AttentivePool(temporal_embed=True) needs num_frames")
        self.dim, self.num_heads, self.num_frames = dim, num_heads, num_frames
        self.query_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm_q, self.norm_k, self.norm_v = (nn.LayerNorm(dim, eps=eps) for _ in range(3))
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        self.temporal_embed = nn.Parameter(torch.zeros(num_frames, dim)) if temporal_embed else None
        self.fused_attn = True
        self.out_features = dim

    def forward_macs(self, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
        """The attention products of one forward (the query against every token, then the weighted values), which
        `dytune.count_macs` cannot see in a fused kernel; the linear layers and norms it counts by type."""
        b, t, n, d = inputs[0].shape
        return b * 2 * t * n * d

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 4 or tokens.shape[-1] != self.dim:
            raise ValueError(f"AttentivePool: expected tokens [B, T, N, {self.dim}], got {tuple(tokens.shape)}")
        b, t, n, d = tokens.shape
        if self.temporal_embed is not None:
            if t != self.num_frames:
                raise ValueError(f"AttentivePool: temporal_embed has {self.num_frames} frames, the input {t}")
            tokens = tokens + self.temporal_embed[None, :, None, :].to(tokens.dtype)
        x = tokens.reshape(b, t * n, d)
        heads, width = self.num_heads, d // self.num_heads
        # through the Linear modules (biases added after), so that hooks such as dytune.count_macs see them
        q = self.q(self.norm_q(self.query_token.expand(b, -1, -1))) + self.q_bias
        k = self.k(self.norm_k(x))
        v = self.v(self.norm_v(x)) + self.v_bias
        q, k, v = (y.reshape(b, -1, heads, width).transpose(1, 2) for y in (q, k, v))
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)
        else:  # timm's switch: the explicit products, which torch's flop counter can see
            out = (q * width ** -0.5 @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, d))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, num_frames={self.num_frames}, "
                f"temporal_embed={self.temporal_embed is not None}")


class FramePool(AttentivePool):
    """Order-aware pooling: the attentive pool over each frame's tokens on its own (one query, shared weights), the
    per-frame vectors concatenated in frame order: [B, T, N, D] -> [B, T * D].

    Pooling all tokens together returns a weighted average, from which a linear head cannot tell which frame showed
    what; with one vector per frame in a fixed order it can (e.g. where an object is in the first and in the last
    frame). The attention products are those of `AttentivePool` on the same tokens.

    Args:
        dim: Token width D.
        num_heads: Attention heads; must divide dim.
        num_frames: Frames T.
        eps: LayerNorm epsilon.
    """

    def __init__(self, dim: int, num_heads: int = 12, num_frames: int = 1, eps: float = 1e-6) -> None:
        if num_frames < 1:
            raise ValueError(f"FramePool: num_frames={num_frames} must be >= 1")
        super().__init__(dim, num_heads, num_frames, eps=eps)
        self.out_features = dim * num_frames

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 4 or tokens.shape[1] != self.num_frames or tokens.shape[-1] != self.dim:
            raise ValueError(f"FramePool: expected tokens [B, {self.num_frames}, N, {self.dim}], "
                             f"got {tuple(tokens.shape)}")
        b, t, n, d = tokens.shape
        return super().forward(tokens.reshape(b * t, 1, n, d)).reshape(b, t * d)


POOLS = ("tokens", "frames")
"""`VideoClassifier(pool=...)`: `AttentivePool` over the tokens of all frames (the paper's) or `FramePool`."""


class VideoClassifier(nn.Module):
    """Clips [B, T, C, H, W] -> logits [B, num_classes] with a backbone (e.g. a timm ViT) applied to every frame.

    The frames are folded into the batch ([B*T, C, H, W]) and go through the backbone's `forward_tokens` (possibly
    converted by `dytune.convert`, whose dispatchers then act per frame); the tokens of
    all frames, [B, T*N, D], are pooled by `AttentivePool` and classified by a linear head. Multi-view input
    [B, V, T, C, H, W] returns the logits of every view, [B, V, num_classes] (the views folded into the batch); the
    video task's `infer` averages them. The backbone's own classifier is removed.

    Args:
        backbone: A backbone of a registered family (`dytune.backbones`), converted or not.
        num_classes: Classes of the head.
        num_frames: Frames per clip T.
        temporal_embed: Learnable per-frame-index embedding before pooling (off: the paper's order-blind model).
        num_heads: Pooling heads; the backbone's if None.
        head_drop: Dropout before the head.
        pool: "tokens": `AttentivePool` over the tokens of all frames (the paper's); "frames": `FramePool`, each
            frame pooled on its own and the frames concatenated in order (order-aware).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, num_frames: int, temporal_embed: bool = False,
                 num_heads: Optional[int] = None, head_drop: float = 0.0, pool: str = "tokens") -> None:
        super().__init__()
        family = backbone_for(backbone, "VideoClassifier")
        if num_classes < 1 or num_frames < 1:
            raise ValueError(f"VideoClassifier: num_classes={num_classes} and num_frames={num_frames} must be >= 1")
        if pool not in POOLS:
            raise ValueError(f"VideoClassifier: pool={pool!r}; expected one of {POOLS}")
        if pool == "frames" and temporal_embed:
            raise ValueError("VideoClassifier: temporal_embed adds nothing to pool='frames', which keeps the frame "
                             "order already; use one of them")
        if getattr(backbone, "num_classes", 0):
            family.reset_classifier(0)
        dim = family.num_features
        if num_heads is None:
            num_heads = family.token_layout(family.depth - 1).num_heads if family.depth else max(dim // 64, 1)
        self.backbone = backbone
        self.num_classes, self.num_frames = num_classes, num_frames
        self.pool = (FramePool(dim, num_heads, num_frames) if pool == "frames"
                     else AttentivePool(dim, num_heads, num_frames, temporal_embed))
        self.head_drop = nn.Dropout(head_drop)
        self.head = nn.Linear(self.pool.out_features, num_classes)

    def trainable_modules(self) -> List[nn.Module]:
        """The modules added on top of the backbone: pooling and head."""
        return [self.pool, self.head]

    def no_weight_decay(self) -> Set[str]:
        """Parameter names to exclude from weight decay (timm's convention): the query, the temporal embedding and
        the backbone's tokens and position embedding."""
        names = {"pool.query_token"} | ({"pool.temporal_embed"} if self.pool.temporal_embed is not None else set())
        inner = self.backbone.no_weight_decay() if hasattr(self.backbone, "no_weight_decay") else set()
        present = {n for n, _ in self.named_parameters()}
        return (names | {f"backbone.{n}" for n in inner}) & present

    def frame_tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """Backbone tokens of every frame, [B, T, N, D]."""
        if clips.ndim != 5 or clips.shape[1] != self.num_frames:
            raise ValueError(f"VideoClassifier: expected clips [B, {self.num_frames}, C, H, W], "
                             f"got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        tokens = backbone_for(self.backbone).forward_tokens(clips.flatten(0, 1))
        return tokens.reshape(b, t, *tokens.shape[1:])

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits from frame tokens [B, T, N, D]."""
        return self.head(self.head_drop(self.pool(tokens)))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes] of clips [B, T, C, H, W], or [B, V, num_classes] of views [B, V, T, C, H, W]."""
        if clips.ndim == 6:
            b, v = clips.shape[:2]
            return self.forward(clips.flatten(0, 1)).view(b, v, -1)
        return self.forward_head(self.frame_tokens(clips))
