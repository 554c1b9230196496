"""Pictures of where tokens were skipped: per image, per frame of a video clip, and next to predicted masks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import find_backbone
from .core.convert import dynamic_blocks

__all__ = ["plot_skip_maps", "plot_frame_skip_maps", "plot_segmentation"]


class Panel(NamedTuple):
    """One skip map: a dispatched sub-block's keep masks [B, N] over the token grid of its block's stage.

    Args:
        name: Caption, e.g. "L3 mlp".
        mask: Keep decisions per image and token, row-major over `grid`.
        stride: Pixels (height, width) per token of the stage.
        grid: Tokens (rows, columns) of the stage.
    """

    name: str
    mask: torch.Tensor
    stride: Tuple[int, int]
    grid: Tuple[int, int]


def _run(model: nn.Module, inputs: torch.Tensor) -> Tuple[Any, List[Panel]]:
    """`model(inputs)` and the skip maps of its dispatched sub-blocks, each on the token grid its stage made of the
    last images the backbone embedded.

    A grid is the backbone's for the size its stem got: whole patches of inputs padded by the model (the
    Segmenter) or by timm (`dynamic_img_pad`), else floored.
    """
    try:
        backbone = find_backbone(model)
    except TypeError as e:
        raise ValueError(str(e)) from None
    sizes: List[Tuple[int, int]] = []
    handle = backbone.stem.register_forward_pre_hook(lambda _, args: sizes.append(tuple(args[0].shape[-2:])))
    try:
        output = model(inputs)
    finally:
        handle.remove()
    if not sizes:
        raise ValueError(f"{type(model).__name__}: its patch embedding did not run on inputs {tuple(inputs.shape)}")
    return output, _keep_panels(model, sizes[-1])


def _keep_panels(model: nn.Module, size: Tuple[int, int]) -> List[Panel]:
    """The skip maps of the last forward, for images of `size` (height, width) as the backbone's stem got them."""
    dynamic_blocks(model)  # raises for a model without dytune blocks
    backbone = find_backbone(model)
    panels = []
    for i, block in enumerate(backbone.blocks):
        stage = backbone.token_layout(i).stage
        panels += [Panel(f"L{i} {name}", mask, backbone.stride(stage), backbone.grid(size, stage))
                   for name, mask in getattr(block, "keep_masks", {}).items()]
    if not panels:
        raise ValueError("no dispatched sub-block ran; use a DyT model in masked or sparse mode")
    return panels


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised images [..., 3, H, W] back to 0..1 (on the CPU, float32), as they were before `Normalize`."""
    return (images.cpu().float() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]).clamp(0, 1)


def _keep_map(mask: torch.Tensor, grid: Tuple[int, int], patch: Tuple[int, int], size: Tuple[int, int]) -> np.ndarray:
    """One image's keep mask [N] over the token `grid` as pixels [H, W] of the image `size`: patches beyond the image
    (padding) are cropped, pixels the grid does not reach (floored) count as skipped.

    Args:
        mask: Keep decision per token, row-major over the grid.
        grid: Tokens (rows, columns).
        patch: Patch (height, width) in pixels.
        size: The image's (H, W).
    """
    if mask.numel() != grid[0] * grid[1]:
        raise ValueError(f"a keep mask of {mask.numel()} tokens does not fill the {grid[0]}x{grid[1]} token grid of "
                         f"a {size[0]}x{size[1]} image in {patch[0]}x{patch[1]} patches")
    keep = mask.float().cpu().reshape(grid).repeat_interleave(patch[0], 0).repeat_interleave(patch[1], 1)
    keep = keep[:size[0], :size[1]]
    return F.pad(keep, (0, size[1] - keep.shape[1], 0, size[0] - keep.shape[0])).numpy()


def _draw(images: torch.Tensor, panels: List[Panel], path: Path, mean: Sequence[float], std: Sequence[float],
          titles: Sequence[str], suptitle: str, pictures: Optional[List[List[Tuple[str, np.ndarray]]]] = None) -> Path:
    """One row per image: the image, its extra `pictures` (e.g. masks, [H, W, 3] in 0..1), then one panel per
    dispatched sub-block with its skipped patches greyed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = denormalize(images, mean, std)
    extra = len(pictures[0]) if pictures else 0
    rows, cols = images.shape[0], len(panels) + 1 + extra
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.4 * rows), squeeze=False)
    for r in range(rows):
        picture = shown[r].permute(1, 2, 0).numpy()
        axes[r][0].imshow(picture)
        axes[r][0].set_title(titles[r], fontsize=7)
        for c, (name, shown_extra) in enumerate(pictures[r] if pictures else (), start=1):
            axes[r][c].imshow(shown_extra)
            axes[r][c].set_title(name, fontsize=7)
        for c, (name, mask, stride, grid) in enumerate(panels, start=1 + extra):
            keep = _keep_map(mask[r], grid, stride, tuple(images.shape[-2:]))[..., None]
            axes[r][c].imshow(picture * (0.25 + 0.75 * keep) + 0.6 * (1 - keep) * [0.2, 0.2, 0.8])
            axes[r][c].set_title(f"{name}: {float(mask[r].float().mean()):.0%}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(suptitle, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@torch.no_grad()
def plot_skip_maps(
        model: nn.Module,
        images: torch.Tensor,
        path: Path,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        titles: Optional[Sequence[str]] = None,
) -> Path:
    """Save a grid: one row per image, the image then one panel per dispatched sub-block, skipped patches greyed out.

    Args:
        model: A converted model (run here in its current mode; eval mode shows the inference decisions).
        images: Normalised input batch [B, 3, H, W].
        path: PNG file to write.
        mean: Normalisation mean, to show the images as they were.
        std: Normalisation std.
        titles: Optional caption per image (e.g. the label).
    """
    _, panels = _run(model, images)
    return _draw(images, panels, path, mean, std, titles or ["input"] * images.shape[0],
                 "bright: patch computed, blue: patch skipped")


@torch.no_grad()
def plot_frame_skip_maps(
        model: nn.Module,
        clip: torch.Tensor,
        path: Path,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        title: str = "",
) -> Path:
    """Save a grid for one video clip: one row per frame, the frame then one panel per dispatched sub-block.

    Args:
        model: A video model around a converted backbone (frames folded into the backbone's batch).
        clip: One normalised clip [1, T, 3, H, W].
        path: PNG file to write.
        mean: Normalisation mean.
        std: Normalisation std.
        title: Caption (e.g. the predicted class).
    """
    if clip.ndim != 5 or clip.shape[0] != 1:
        raise ValueError(f"plot_frame_skip_maps: expected one clip [1, T, 3, H, W], got {tuple(clip.shape)}")
    _, panels = _run(model, clip)
    frames = clip[0]
    heading = (f"{title}: " if title else "") + "bright: patch computed, blue: patch skipped"
    return _draw(frames, panels, path, mean, std, [f"frame {t}" for t in range(frames.shape[0])], heading)


@torch.no_grad()
def plot_segmentation(
        model: nn.Module,
        images: torch.Tensor,
        masks: torch.Tensor,
        path: Path,
        paint: Callable[[torch.Tensor], np.ndarray],
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        ignore_index: int = 255,
) -> Path:
    """Save a grid for segmentation: per image, the image, its ground truth, the model's prediction (with its pixel
    accuracy) and one skip-map panel per dispatched sub-block.

    Args:
        model: A segmentation model around a converted backbone, returning logits [B, K, H, W] at the input size.
        images: Normalised images [B, 3, H, W].
        masks: Ground-truth labels [B, H, W] at the image size (`ignore_index`: unlabelled, drawn black).
        path: PNG file to write.
        paint: A label map [H, W] as colours [H, W, 3] in 0..1 (the task's palette).
        mean: Normalisation mean.
        std: Normalisation std.
        ignore_index: The label of unlabelled pixels.
    """
    if masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"plot_segmentation: masks {tuple(masks.shape)} do not match images {tuple(images.shape)}")
    logits, panels = _run(model, images)
    labels = logits.argmax(1).cpu()
    masks = masks.cpu()
    pictures, titles = [], []
    for truth, predicted in zip(masks, labels):
        valid = truth != ignore_index
        accuracy = float((predicted[valid] == truth[valid]).float().mean()) if valid.any() else float("nan")
        pictures.append([("ground truth", paint(truth)), (f"prediction: {accuracy:.0%} px", paint(predicted))])
        titles.append("image")
    return _draw(images, panels, path, mean, std, titles,
                 "masks: one colour per class; skip maps: bright patch computed, blue patch skipped", pictures)
