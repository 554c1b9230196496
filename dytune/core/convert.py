"""Patch dynamic tuning into a backbone (`dytune.backbones`), and model-level controls (execution mode, temperature)."""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional

import torch
from torch import nn

from ..backbones import backbone_for, find_backbone
from .config import DyTConfig
from .modules.attention import supports_query_subset
from .modules.blocks import BLOCK_VARIANTS, EXECUTION_MODES, DynamicBlock

__all__ = ["convert", "converted_config", "inner_vit", "is_converted", "execution", "dynamic_blocks", "keep_masks",
           "keep_rates", "logits_only", "set_tau", "set_tau_progress"]


def _check_input(model: nn.Module, args: tuple) -> None:
    """Forward pre-hook: reject images the backbone cannot take, with a message saying what fits."""
    backbone_for(model).check_input(args[0] if args else None)


def convert(model: nn.Module, config: Optional[DyTConfig] = None) -> nn.Module:
    """Add adapters and token dispatchers to a backbone (`dytune.backbones`), in place, and freeze it.

    The blocks are replaced by dynamic blocks that adopt the original sub-modules, so the backbone's state-dict keys
    are unchanged. Afterwards only the new modules and the classifier head are trainable. In train mode the model runs
    "masked", in eval mode "sparse" (see `execution`).

    Args:
        model: A model of a registered backbone family, e.g. a timm VisionTransformer with pre-norm `Block`s
            (ViT, DeiT, CLIP-style, register/LayerScale models).
        config: Conversion settings; `DyTConfig()` if omitted.

    Returns:
        The same model object, converted.
    """
    config = config or DyTConfig()
    backbone = backbone_for(model, "dytune.convert")
    if any(isinstance(b, DynamicBlock) for b in backbone.blocks):
        raise ValueError("this model is already converted by dytune.convert")
    backbone.validate()
    depth = backbone.depth
    layers = set(range(depth)) if config.layers is None else set(config.layers)
    if any(i >= depth for i in layers):
        raise ValueError(f"DyTConfig.layers={config.layers}: the model has {depth} blocks (indices 0..{depth - 1})")
    block_cls = BLOCK_VARIANTS[config.variant]
    positional = [i for i in sorted(layers) if not backbone.subset_attention(i)]
    if block_cls.dispatches_attention and positional:
        reason = backbone.attention_dispatch_refusal or (
            f"the attention of blocks {positional} depends on token positions, which attention over kept tokens "
            f"does not pass")
        raise ValueError(f"DyTConfig.variant={config.variant!r} dispatches attention, but in {backbone.family} "
                         f"{reason}; use variant='mlp'")
    model.requires_grad_(False)
    for i in range(depth):
        layout = backbone.token_layout(i)
        backbone.blocks[i] = block_cls(backbone.block_parts(i), layout.dim, layout.num_prefix_tokens, config,
                                       dynamic=i in layers)
    for head in backbone.classifier_heads():
        head.requires_grad_(True)
    model.dytune_config = config
    model.register_forward_pre_hook(_check_input)
    return model


def converted_config(model: nn.Module) -> Optional[DyTConfig]:
    """The DyTConfig of the converted ViT that is `model` or sits inside it (a task model around a backbone), or
    None when nothing in `model` was converted by `dytune.convert`."""
    for module in model.modules():
        config = getattr(module, "dytune_config", None)
        if isinstance(config, DyTConfig):
            return config
    return None


def inner_vit(model: nn.Module) -> nn.Module:
    """The backbone model (e.g. a timm VisionTransformer) that is `model` or sits inside it (a task model around
    a backbone); `dytune.backbones.find_backbone` gives it with its protocol."""
    return find_backbone(model).model


def is_converted(model: nn.Module) -> bool:
    """Whether `model` is, or holds, a ViT converted by `dytune.convert`."""
    return converted_config(model) is not None


def dynamic_blocks(model: nn.Module) -> List[DynamicBlock]:
    """The dytune blocks of a converted model, in order."""
    blocks = [m for m in model.modules() if isinstance(m, DynamicBlock)]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no dytune blocks; convert it with dytune.convert first")
    return blocks


def keep_masks(model: nn.Module) -> List[torch.Tensor]:
    """Patch-token keep masks [B, N_patch] of every dispatched sub-block in the last forward, in order."""
    return [mask for block in dynamic_blocks(model) for mask in block.keep_masks.values()]


def logits_only(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Let `model(images)` compute, in the last block, only the outputs the classifier reads.

    With class-token pooling the head never sees the patch tokens that leave the last block. While enabled, a sparse
    forward through `model(...)` computes the last block's queries, attention rows, adapter and MLP for the prefix
    tokens alone (keys and values still come from every token), and the last block records a keep rate of 0.
    The logits are unchanged; `forward_features`, masked and complete execution are untouched.

    Args:
        model: A converted backbone that pools the class token (timm's `global_pool='token'`) and has
            plain adapters.
        enabled: False restores the full last block.

    Returns:
        The same model.
    """
    last = dynamic_blocks(model)[-1]
    handles = getattr(model, "_dytune_logits_only", ())
    for handle in handles:
        handle.remove()
    model._dytune_logits_only = ()
    last.prefix_output = False
    if not enabled:
        return model
    backbone = backbone_for(model, "dytune.logits_only")
    problems = []
    if backbone.pooling != "token":
        problems.append(f"global_pool={backbone.pooling!r} (needs 'token')")
    if backbone.token_layout(backbone.depth - 1).num_prefix_tokens == 0:
        problems.append("no class token")
    if model.dytune_config.experts > 1:
        problems.append("mixture-of-experts adapters route on every token")
    if not supports_query_subset(last.attn):
        problems.append(f"attention module {type(last.attn).__name__}")
    hook = last.between_sub_blocks
    if getattr(hook, "needs_patch_tokens", False):
        problems.append(f"a sequence transform between the last block's sub-blocks that needs the patch tokens "
                        f"({type(hook).__name__}, e.g. token merging)")
    if problems:
        raise ValueError("dytune.logits_only: unsupported model: " + "; ".join(problems))

    model._dytune_logits_only = (model.register_forward_pre_hook(_start_logits_only),
                                 model.register_forward_hook(_stop_logits_only, always_call=True))
    return model


def _start_logits_only(model: nn.Module, args: tuple) -> None:
    backbone_for(model).blocks[-1].prefix_output = True  # through the hook's argument: deep copies switch their own


def _stop_logits_only(model: nn.Module, args: tuple, output: torch.Tensor) -> None:
    backbone_for(model).blocks[-1].prefix_output = False


def keep_rates(model: nn.Module) -> List[float]:
    """Mean keep rate of each dispatched sub-block in the last forward."""
    return [float(mask.detach().float().mean()) for mask in keep_masks(model)]


@contextlib.contextmanager
def execution(model: nn.Module, mode: str, bucket: Optional[int] = None) -> Iterator[nn.Module]:
    """Run a converted model in one execution mode inside the block, whatever its train/eval state.

    Args:
        model: A converted model.
        mode: "sparse" (skipped tokens are not computed; inference only), "masked" (everything computed, skipped
            outputs zeroed), "complete" (nothing skipped) or "capacity" (each dispatcher keeps exactly its top-k
            patch tokens per image, k from `dytune.set_capacity`: static shapes, for export; inference only).
        bucket: Sparse execution rounds the rows it gathers (and the width of packed attention) up to a bucket,
            so that few distinct matrix shapes occur (`dytune.core.modules.tokens.bucketed`): multiples of `bucket`,
            coarser above 32 * bucket rows, padding under 3.1 %. 1 = exact kept counts; None keeps the blocks'
            setting (`DEFAULT_BUCKET`, 16, unless changed). Outputs do not depend on it (within fp32 rounding).
    """
    if mode not in EXECUTION_MODES:
        raise ValueError(f"execution mode {mode!r}: expected one of {', '.join(EXECUTION_MODES)}")
    if bucket is not None and (isinstance(bucket, bool) or not isinstance(bucket, int) or bucket < 1):
        raise ValueError(f"bucket={bucket!r}: expected an integer >= 1 (1 = exact token counts) or None")
    blocks = dynamic_blocks(model)
    previous = [(b.execution, b.bucket) for b in blocks]
    for b in blocks:
        b.execution = mode
        b.bucket = b.bucket if bucket is None else bucket
    try:
        yield model
    finally:
        for b, (mode_before, bucket_before) in zip(blocks, previous):
            b.execution, b.bucket = mode_before, bucket_before


def set_tau(model: nn.Module, tau: float) -> None:
    """Set the Gumbel-sigmoid temperature of every dispatcher."""
    if not tau > 0:
        raise ValueError(f"tau={tau!r}: expected a value > 0")
    for block in dynamic_blocks(model):
        for dispatcher in block.dispatchers().values():
            dispatcher.tau = tau


def set_tau_progress(model: nn.Module, progress: float) -> float:
    """Anneal tau linearly from `DyTConfig.tau` to `DyTConfig.tau_final` as training progress goes 0 -> 1.

    Returns the temperature set (the constant `tau` when `tau_final` is None).
    """
    config = converted_config(model)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no dytune blocks; convert it with dytune.convert first")
    progress = min(max(progress, 0.0), 1.0)
    end = config.tau if config.tau_final is None else config.tau_final
    tau = config.tau + (end - config.tau) * progress
    set_tau(model, tau)
    return tau
