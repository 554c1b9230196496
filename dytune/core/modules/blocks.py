"""Dynamic transformer blocks, one class per dispatch variant of the paper.

Each block adopts the sub-modules of a timm `Block` (so pretrained weights keep their names) and adds adapters and
token dispatchers. One set of weights runs in three execution modes:

* "masked": every token is computed and the outputs of skipped tokens are zeroed (training; exact gradients).
* "sparse": only the kept tokens of the batch are computed (inference; real savings).
* "complete": nothing is skipped and dispatchers are not run (the self-distillation teacher).
* "capacity": each dispatcher keeps exactly its capacity, the top-k patch tokens of every image by score
  (`dytune.set_capacity`), so that every shape is static (inference and export).

Between the attention and the MLP sub-blocks every block calls its `between_sub_blocks` hook (None by default), the
one place where token merging (`dytune.core.tome`) and similar sequence transforms plug in.
"""
from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional, Protocol, Tuple

import torch
from timm.layers import Mlp
from torch import nn

from ...backbones.base import BlockParts, BorrowedScale
from ..config import DyTConfig
from ..flops import attention_macs, tokenwise_macs
from .adapter import Adapter, build_adapter
from .attention import prefix_attention
from .capacity import capacity_count, index_mask, scatter_add_rows, top_k_index
from .dispatcher import TokenDispatcher
from .tokens import (DEFAULT_BUCKET, add_tokenwise, attention_mask, flat_index, gather_positions, gather_tokens,
                     pack, pad_index, scatter_add_valid, with_prefix)

EXECUTION_MODES = ("masked", "sparse", "complete", "capacity")
INFERENCE_MODES = ("sparse", "capacity")


class ForwardRecord(NamedTuple):
    """One forward of a dynamic block, as its MAC count needs it.

    Args:
        shape: (rows, tokens) of the block's input.
        mlp_input_tokens: Tokens entering the MLP when fewer than `tokens` (token merging), else None.
        prefix_only: Only the prefix tokens' outputs were computed (`dytune.logits_only`).
        keep_masks: Sub-block name -> [rows, patch tokens] keep mask of the dispatched sub-blocks.
        grid: (rows, columns) of the token grid when the block took [B, H, W, C] tokens (window attention), else None.
    """

    shape: Tuple[int, int]
    mlp_input_tokens: Optional[int]
    prefix_only: bool
    keep_masks: Dict[str, torch.Tensor]
    grid: Optional[Tuple[int, int]] = None


class SubBlockHook(Protocol):
    """The extension point of a `DynamicBlock`, set as `block.between_sub_blocks`.

    Called once per forward of the block, in every execution mode, with the tokens that leave the attention
    sub-block (attention output and, where dispatched, its adapter added) and before the MLP sub-block sees them.
    It returns the tokens the MLP sub-block gets; it may drop or merge patch tokens (the MLP then runs on fewer,
    which `macs_per_image` counts) but must keep the prefix tokens first. Layer dispatch runs attention and MLP as
    one dispatched sub-block, so there the hook gets the block's output. In the prefix-only forward of
    `dytune.logits_only` the hook gets the prefix tokens alone; a hook that cannot work on those sets the class
    attribute `needs_patch_tokens = True`, and `logits_only` refuses a model whose last block has it.

    Use a plain callable, not an `nn.Module`: a module would join the block's state dict.
    """

    needs_patch_tokens: bool = False

    def __call__(self, block: "DynamicBlock", x: torch.Tensor) -> torch.Tensor: ...


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no device argument
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def _may_write_in_place(x: torch.Tensor) -> bool:
    """In-place updates are safe without autograd and pay off outside autocast (where dtypes would mix).

    Under torch.compile the plain path is taken: inductor fuses it by itself, and `out=` into a view of a tensor
    whose size is symbolic fails to trace.
    """
    return not torch.is_grad_enabled() and not _autocast_enabled(x.device.type) and not torch.compiler.is_compiling()


def _has_hooks(module: nn.Module) -> bool:
    """Whether calling the module's parts directly would skip forward hooks registered on it."""
    from torch.nn.modules import module as torch_module

    return bool(module._forward_hooks or module._forward_pre_hooks or torch_module._global_forward_hooks
                or torch_module._global_forward_pre_hooks)


def add_adapter_(x: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
    """x += adapter(x), in place; x must be a contiguous tensor the caller owns.

    For a plain adapter in eval mode the up projection and the scale accumulate straight into x, which saves the
    temporaries and some of the passes over [B, N, C] that `x + adapter(x)` costs.
    """
    if not isinstance(adapter, Adapter) or adapter.training or _has_hooks(adapter):
        return x.add_(adapter(x).to(x.dtype))
    flat = x.view(-1, x.shape[-1])
    hidden = adapter.act(adapter.down(flat))
    # addmm with out= rather than addmm_: torch's FLOP counter sees the former only
    torch.addmm(flat, hidden, adapter.up.weight.t(), alpha=adapter.scale, out=flat)
    return flat.add_(adapter.up.bias, alpha=adapter.scale).view_as(x)


class DynamicBlock(nn.Module):
    """Base class: a pre-norm block whose sub-blocks can be skipped per token.

    Args:
        block: The sub-modules adopted: a backbone's `BlockParts`, or a timm `Block` (which has them by name). With
            `windows` (timm Swin) attention runs within windows of the token grid, and the block takes and returns
            [B, H, W, C] tokens.
        dim: Token width.
        num_prefix_tokens: Leading class/distillation/register tokens; they are never skipped.
        config: Adapter and dispatcher settings.
        dynamic: Build dispatchers; without them every token is computed (AdaptFormer-style block).
    """

    variant: str = ""
    sub_blocks: tuple = ()  # names of the dispatched sub-blocks, each with `<name>_dispatcher` and `<name>_adapter`
    dispatches_attention: bool = False  # skipped tokens bypass attention, so it does not see every token
    attn_gate: str = "attn"  # the dispatcher whose keep mask decides which tokens attention computes (if any)
    mlp_gate: str = "mlp"  # the same for norm2 + MLP
    between_sub_blocks: Optional[SubBlockHook] = None  # see `SubBlockHook`; None costs one attribute read
    bucket: int = DEFAULT_BUCKET  # sparse row/width bucket (`tokens.bucketed`); `dytune.execution(..., bucket=)`

    def __init__(self, block: nn.Module, dim: int, num_prefix_tokens: int, config: DyTConfig, dynamic: bool) -> None:
        super().__init__()
        for name, part in zip(BlockParts._fields, block if isinstance(block, BlockParts) else BlockParts.of(block)):
            setattr(self, name, part)
            if isinstance(part, BorrowedScale):  # the block's own parameter (timm Eva's gamma_1), under its own name
                self.register_parameter(part.name, part.gamma)
        self.dim = dim
        self.num_prefix_tokens = num_prefix_tokens
        self.dynamic = dynamic
        self.execution: Optional[str] = None
        self.keep_masks: Dict[str, torch.Tensor] = {}
        self.prefix_output = False  # set by `dytune.logits_only` while the model computes logits
        self._prefix_only = False  # the last forward computed the prefix tokens' outputs only
        self._shape = (0, 0)
        self._mlp_input_tokens: Optional[int] = None  # set when `between_sub_blocks` shortens the sequence
        self._rope: Optional[torch.Tensor] = None  # rotary embeddings of the current forward (timm Eva)
        self._grid: Optional[Tuple[int, int]] = None  # token grid of the last [B, H, W, C] input (window attention)
        for name in self.sub_blocks:
            setattr(self, f"{name}_adapter", build_adapter(
                dim, config.bottleneck, config.experts, config.adapter_scale, config.adapter_dropout))
            dispatcher = TokenDispatcher(dim, tau=config.tau, threshold=config.threshold) if dynamic else None
            setattr(self, f"{name}_dispatcher", dispatcher)

    @property
    def mode(self) -> str:
        """The execution mode of the next forward: the one set by `dytune.execution`, else masked/sparse by train/eval."""
        mode = self.execution or ("masked" if self.training else "sparse")
        if mode in INFERENCE_MODES and self.training:
            raise RuntimeError(
                f"dytune: {mode!r} execution is for inference; call model.eval(), or use 'masked' to train")
        return mode

    def dispatchers(self) -> Dict[str, TokenDispatcher]:
        return {n: getattr(self, f"{n}_dispatcher") for n in self.sub_blocks if getattr(self, f"{n}_dispatcher") is not None}

    def _keep(self, name: str, x: torch.Tensor) -> Optional[torch.Tensor]:
        """[B, N] keep mask of sub-block `name` (prefix tokens kept), or None when every token is computed.

        In capacity execution it is instead the [B, P + k] positions of the computed tokens (`top_k_index`).
        """
        dispatcher = getattr(self, f"{name}_dispatcher")
        if dispatcher is None or self.mode == "complete":
            return None
        if self.mode == "capacity":
            return self._capacity_index(name, dispatcher, x)
        mask = dispatcher(x[:, self.num_prefix_tokens:])
        self.keep_masks[name] = mask
        return with_prefix(mask, self.num_prefix_tokens)

    def _capacity_index(self, name: str, dispatcher: TokenDispatcher, x: torch.Tensor) -> torch.Tensor:
        """Positions of the prefix tokens and of each image's top-k patch tokens, k from the dispatcher's capacity."""
        if dispatcher.capacity is None:
            raise ValueError(f"dytune: capacity execution: the {name!r} dispatcher of this {self.variant!r} block has "
                             f"no capacity; set one with dytune.set_capacity(model, ...)")
        patches = x[:, self.num_prefix_tokens:]
        index = top_k_index(dispatcher.scores(patches), capacity_count(dispatcher.capacity, patches.shape[1]),
                            self.num_prefix_tokens)
        self.keep_masks[name] = index_mask(index, self.num_prefix_tokens, patches.shape[1], x.dtype)
        return index

    def _attn_out(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                  positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention sub-block output of x; `positions` [B, L] are the sequence positions of x's rows when x holds
        gathered tokens, so that rotary embeddings are taken at the tokens' true positions."""
        if self.windows is not None:
            if attn_mask is not None or positions is not None or self._grid is None:
                raise RuntimeError("dytune: window attention runs over the whole token grid, [B, H, W, C] tokens")
            batch, tokens, dim = x.shape
            out = self.windows(self.attn, self.norm1(x).view(batch, *self._grid, dim))
            return self.drop_path1(self.ls1(out.view(batch, tokens, -1)))
        rope = self._rope
        if rope is None:
            return self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask)))
        if positions is not None:
            rope = gather_positions(rope, positions, self.num_prefix_tokens)
        return self.drop_path1(self.ls1(self.attn(self.norm1(x), rope=rope, attn_mask=attn_mask)))

    def _mlp_out(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    def _mlp_out_inference(self, x: torch.Tensor) -> torch.Tensor:
        """`_mlp_out` without autograd: a timm `Mlp` with exact GELU applies it in place, which saves the block's
        largest temporary ([tokens, hidden]) and its allocation."""
        mlp = self.mlp
        plain = type(mlp) is Mlp and type(mlp.act) is nn.GELU and mlp.act.approximate == "none"
        if not plain or self.training or _has_hooks(mlp):
            return self._mlp_out(x)
        hidden = mlp.fc1(self.norm2(x))
        torch.ops.aten.gelu_(hidden)
        return self.drop_path2(self.ls2(mlp.fc2(mlp.norm(hidden))))

    def _add_tokenwise(
            self, out: torch.Tensor, x: torch.Tensor, keep: Optional[torch.Tensor],
            fn: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """out + keep * fn(x) for a token-wise fn, computing fn only on kept tokens in sparse and capacity modes."""
        if keep is None:
            return out + fn(x)
        if self.mode == "masked":
            return out + fn(x) * keep.unsqueeze(-1).to(x.dtype)
        if self.mode == "capacity":
            return scatter_add_rows(out, keep, fn(gather_tokens(x, keep)))
        return add_tokenwise(out.contiguous(), x, keep, fn, self.bucket)

    def _adapter_and_mlp(self, x: torch.Tensor) -> torch.Tensor:
        """x + Adapter(x) + M * MLP(norm2(x)), with M from the MLP dispatcher on x.

        In sparse inference x (a tensor this block created) is updated in place: the kept rows are gathered first,
        the adapter is accumulated into x, and the MLP of the kept rows is added back at their positions.
        """
        keep = self._keep("mlp", x)
        if keep is None or self.mode != "sparse" or not _may_write_in_place(x) or not x.is_contiguous():
            return self._add_tokenwise(x + self.mlp_adapter(x), x, keep, self._mlp_out)
        flat = x.view(-1, x.shape[-1])
        index = flat_index(keep)
        kept = flat.index_select(0, pad_index(index, self.bucket))
        add_adapter_(x, self.mlp_adapter)
        if index.numel():
            flat.index_add_(0, index, self._mlp_out_inference(kept)[:index.numel()].to(x.dtype))
        return x

    def _add_attention(
            self, out: torch.Tensor, x: torch.Tensor, keep: Optional[torch.Tensor], with_mlp: bool = False,
    ) -> torch.Tensor:
        """out + keep * (attention among kept tokens [+ the MLP after it]) of x."""
        if keep is None:
            a = self._attn_out(x)
            out = out + a
            return out + self._mlp_out(x + a) if with_mlp else out
        if self.mode == "masked":
            a = self._attn_out(x, attention_mask(keep > 0))
            delta = a + self._mlp_out(x + a) if with_mlp else a
            return out + delta * keep.unsqueeze(-1).to(x.dtype)
        if self.mode == "capacity":  # every image computes P + k tokens: no padding, no mask
            if keep.shape[1] == 0:
                return out
            packed = gather_tokens(x, keep)
            a = self._attn_out(packed, positions=keep)
            return scatter_add_rows(out, keep, a + self._mlp_out(packed + a) if with_mlp else a)
        order, valid = pack(keep, self.bucket)
        if not torch.compiler.is_exporting() and order.shape[1] == 0:  # nothing kept in the whole batch (possible without prefix tokens)
            return out
        packed = gather_tokens(x, order)
        mask = attention_mask(valid)
        a = self._attn_out(packed, mask, positions=order)
        if with_mlp:
            if mask is None:
                a = a + self._mlp_out(packed + a)
            else:  # the MLP is token-wise: run it on the valid rows only (bucketed), not on the packing
                a = add_tokenwise(a.contiguous(), packed + a, valid, self._mlp_out, self.bucket)
        return scatter_add_valid(out.contiguous(), order, valid, a)

    def _between(self, x: torch.Tensor, before_mlp: bool = True) -> torch.Tensor:
        """Apply the `between_sub_blocks` hook, if any, and record how many tokens the MLP sub-block gets."""
        hook = self.between_sub_blocks
        if hook is None:
            return x
        tokens = x.shape[1]
        x = hook(self, x)
        if before_mlp and not self._prefix_only and x.shape[1] != tokens:
            self._mlp_input_tokens = x.shape[1]
        return x

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False,
                rope: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Args:
            x: [B, N, C] tokens, prefix tokens first; [B, H, W, C] for a block with window attention (timm Swin).
            attn_mask, is_causal: Unsupported (the block builds its own masks); accepted for the backbone's call.
            rope: Rotary position embeddings of the patch tokens, row j for patch token j (timm Eva), or None.
        """
        if attn_mask is not None or is_causal:
            raise NotImplementedError("dytune blocks take no external attention mask; they build their own")
        if x.ndim == 4:  # a stage's grid, row-major: the same tokens as [B, H * W, C]
            batch, height, width, dim = x.shape
            self._grid = (height, width)
            return self._forward_tokens(x.reshape(batch, height * width, dim), rope).reshape(batch, height, width, -1)
        self._grid = None
        return self._forward_tokens(x, rope)

    def _forward_tokens(self, x: torch.Tensor, rope: Optional[torch.Tensor]) -> torch.Tensor:
        self.keep_masks = {}
        self._shape = (x.shape[0], x.shape[1])
        self._mlp_input_tokens = None
        self._prefix_only = self.prefix_output and self.mode == "sparse"
        if rope is None:
            return self._forward_prefix(x) if self._prefix_only else self._forward(x)
        if self._prefix_only:
            raise NotImplementedError("dytune.logits_only: the prefix-only forward applies no rotary embeddings")
        self._rope = rope
        try:
            return self._forward(x)
        finally:
            self._rope = None  # nothing held between forwards

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward_prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for the prefix tokens only, [B, num_prefix_tokens, C] (sparse inference)."""
        raise NotImplementedError

    def _prefix_attn_out(self, x: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention output of the prefix tokens, attending to the kept tokens (all when keep is None)."""
        attended = None if keep is None else keep > 0
        out = prefix_attention(self.attn, self.norm1(x), self.num_prefix_tokens, attended)
        return self.drop_path1(self.ls1(out))

    def _skip_patch_mlps(self, x: torch.Tensor) -> None:
        """Record that no patch token went through the MLP (the dispatcher was not run)."""
        self.keep_masks["mlp"] = x.new_zeros(x.shape[0], x.shape[1] - self.num_prefix_tokens)

    def last_forward(self) -> "ForwardRecord":
        """What the last forward computed (rows, tokens, keep masks), enough to count its MACs later."""
        return ForwardRecord(self._shape, self._mlp_input_tokens, self._prefix_only, dict(self.keep_masks), self._grid)

    def _kept(self, record: "ForwardRecord", name: str, total: int) -> torch.Tensor:
        """Tokens (prefix included) that went through sub-block `name` in the recorded forward, per image (`total`
        when `name` was not dispatched)."""
        mask = record.keep_masks.get(name)
        if mask is None:
            return torch.full((record.shape[0],), total, dtype=torch.int64)
        return mask.detach().sum(dim=1).round().long().cpu() + self.num_prefix_tokens

    def macs_per_image(self, norms: bool = True, record: Optional["ForwardRecord"] = None) -> torch.Tensor:
        """MACs per image (backbone row) of the last forward, or of `record`, from the tokens each sub-block
        actually computed."""
        record = record or self.last_forward()
        batch, tokens = record.shape
        prefix = self.num_prefix_tokens
        mlp_input = record.mlp_input_tokens or tokens
        if record.prefix_only:  # keys and values of every token (skipped ones masked), queries of the prefix
            attn_tokens = torch.full((batch,), tokens, dtype=torch.int64)
            queries = mlp_tokens = torch.full((batch,), prefix, dtype=torch.int64)
        else:
            attn_tokens = queries = self._kept(record, self.attn_gate, tokens)
            mlp_tokens = self._kept(record, self.mlp_gate, mlp_input)
        if self.windows is not None:  # every token, in windows over the padded grid (no attention dispatch)
            macs = torch.full((batch,), self.windows.macs(self.attn, record.grid), dtype=torch.int64)
        else:
            macs = attention_macs(self.attn, attn_tokens, norms, queries)
        macs = macs + attn_tokens * tokenwise_macs(self.norm1, norms)
        macs = macs + mlp_tokens * (tokenwise_macs(self.norm2, norms) + tokenwise_macs(self.mlp, norms))
        for name in self.sub_blocks:
            seen = mlp_input if name == "mlp" else tokens
            adapted = prefix if record.prefix_only else seen
            macs = macs + getattr(self, f"{name}_adapter").macs(torch.full((batch,), adapted, dtype=torch.int64))
            if name in record.keep_masks and not (record.prefix_only and name == "mlp"):
                macs = macs + (seen - prefix) * self.dim
        return macs

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, dynamic={self.dynamic}, num_prefix_tokens={self.num_prefix_tokens}"


class MLPDispatchBlock(DynamicBlock):
    """MLP dispatch (the paper's default): attention sees every token; skipped tokens bypass norm2 + MLP.

    out = x' + M * MLP(norm2(x')) + Adapter(x'), with x' = x + Attn(norm1(x)) and M decided on x'.
    """

    variant = "mlp"
    sub_blocks = ("mlp",)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._between(x + self._attn_out(x))
        return self._adapter_and_mlp(x)

    def _forward_prefix(self, x: torch.Tensor) -> torch.Tensor:
        self._skip_patch_mlps(x)
        x = self._between(x[:, :self.num_prefix_tokens] + self._prefix_attn_out(x))
        return x + self.mlp_adapter(x) + self._mlp_out(x)


class AttnDispatchBlock(DynamicBlock):
    """Attention dispatch: kept tokens attend among themselves, skipped ones bypass attention; the MLP sees all.

    x' = x + M * Attn_kept(norm1(x)) + Adapter(x); out = x' + MLP(norm2(x')).
    """

    variant = "attn"
    sub_blocks = ("attn",)
    dispatches_attention = True

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._add_attention(x + self.attn_adapter(x), x, self._keep("attn", x))  # mask freed before the MLP
        x = self._between(x)
        return x + self._mlp_out(x)

    def _forward_prefix(self, x: torch.Tensor) -> torch.Tensor:
        lead = x[:, :self.num_prefix_tokens]
        lead = self._between(lead + self.attn_adapter(lead) + self._prefix_attn_out(x, self._keep("attn", x)))
        return lead + self._mlp_out(lead)


class AttnMLPDispatchBlock(DynamicBlock):
    """Attention-MLP dispatch: a dispatcher and a parallel adapter for each of the two sub-blocks."""

    variant = "attn_mlp"
    sub_blocks = ("attn", "mlp")
    dispatches_attention = True

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._add_attention(x + self.attn_adapter(x), x, self._keep("attn", x))
        return self._adapter_and_mlp(self._between(x))

    def _forward_prefix(self, x: torch.Tensor) -> torch.Tensor:
        lead = x[:, :self.num_prefix_tokens]
        lead = self._between(lead + self.attn_adapter(lead) + self._prefix_attn_out(x, self._keep("attn", x)))
        self._skip_patch_mlps(x)
        return lead + self.mlp_adapter(lead) + self._mlp_out(lead)


class LayerDispatchBlock(DynamicBlock):
    """Layer dispatch: one dispatcher per block; a skipped token bypasses the whole layer, kept ones attend among
    themselves. out = x + M * (Layer(x) - x) + Adapter(x).
    """

    variant = "layer"
    sub_blocks = ("layer",)
    dispatches_attention = True
    attn_gate = mlp_gate = "layer"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = self._keep("layer", x)
        return self._between(self._add_attention(x + self.layer_adapter(x), x, keep, with_mlp=True), before_mlp=False)

    def _forward_prefix(self, x: torch.Tensor) -> torch.Tensor:
        lead = x[:, :self.num_prefix_tokens]
        a = self._prefix_attn_out(x, self._keep("layer", x))
        return self._between(lead + self.layer_adapter(lead) + a + self._mlp_out(lead + a), before_mlp=False)


BLOCK_VARIANTS = {cls.variant: cls for cls in (MLPDispatchBlock, AttnDispatchBlock, AttnMLPDispatchBlock, LayerDispatchBlock)}
