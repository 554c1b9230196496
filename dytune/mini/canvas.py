"""Batched composition of sprites (glyphs, digits, clothing items) onto textured canvases, in torch.

Shared by the mini-VTAB builder and the backbone's pre-training so both see the same kind of image: a procedural
background texture, one or more ink sprites placed by an affine map (centre, size, rotation) and coloured so they
stand out from the background. All randomness comes from an explicit `torch.Generator`, so a seed fixes the images.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["contrasting_colors", "luminance", "paste", "place_theta", "textures", "uniform"]

_LUMA = torch.tensor([0.299, 0.587, 0.114])


def uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """n samples from U(low, high)."""
    return low + (high - low) * torch.rand(n, generator=generator)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Luma of colours (..., 3) in [0, 1]."""
    return rgb @ _LUMA.to(rgb)


def _pattern(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 1, size, size) patterns in [0, 1]: smooth value noise, gratings or checkerboards, mixed evenly."""
    kind = torch.randint(0, 3, (n,), generator=generator)
    # smooth noise: a random k x k grid (k in 2..8) upsampled bicubically
    noise = torch.empty(n, 1, size, size)
    cells = torch.randint(2, 9, (n,), generator=generator)
    for k in cells.unique().tolist():
        idx = (cells == k).nonzero().flatten()
        grid = torch.rand(len(idx), 1, k, k, generator=generator)
        noise[idx] = F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=True)
    # oriented gratings and (rotated) checkerboards with 1.5 to 6 periods across the canvas
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    angle = uniform(n, 0, math.pi, generator)[:, None, None]
    freq = uniform(n, 1.5, 6.0, generator)[:, None, None] * math.pi
    phase = uniform(n, 0, 2 * math.pi, generator)[:, None, None]
    u = xs * torch.cos(angle) + ys * torch.sin(angle)
    v = -xs * torch.sin(angle) + ys * torch.cos(angle)
    grating = 0.5 + 0.5 * torch.sin(freq * u + phase)
    checker = 0.5 + 0.5 * torch.sign(torch.sin(freq * u + phase) * torch.sin(freq * v + phase))
    out = torch.where(kind[:, None, None] == 0, noise[:, 0], torch.where(kind[:, None, None] == 1, grating, checker))
    return out.clamp(0, 1)[:, None]


def textures(n: int, size: int, generator: torch.Generator, contrast: float = 0.35) -> torch.Tensor:
    """n random textured backgrounds (n, 3, size, size) in [0, 1].

    A pattern interpolates between two colours whose distance is at most `contrast`; contrast 0 gives plain canvases.

    Args:
        n: number of canvases.
        size: side in pixels.
        generator: source of randomness.
        contrast: largest per-channel difference between the two colours of a texture.
    """
    base = uniform(3 * n, 0.1, 0.9, generator).view(n, 3)
    delta = uniform(3 * n, -1.0, 1.0, generator).view(n, 3) * contrast
    low, high = (base - delta / 2).clamp(0, 1), (base + delta / 2).clamp(0, 1)
    pattern = _pattern(n, size, generator)
    return low[:, :, None, None] + (high - low)[:, :, None, None] * pattern


def contrasting_colors(background: torch.Tensor, generator: torch.Generator, gap: float = 0.4) -> torch.Tensor:
    """Random ink colours (n, 3) whose luma differs from each background's mean luma by about `gap` or more.

    Args:
        background: canvases (n, 3, H, W).
        generator: source of randomness.
        gap: luma distance between ink and background.
    """
    n = background.shape[0]
    bg = luminance(background.mean(dim=(2, 3)))
    target = torch.where(bg < 0.5, bg + gap + uniform(n, 0, 0.9 - gap, generator) * (1 - bg - gap).clamp(min=0),
                         bg - gap - uniform(n, 0, 0.9 - gap, generator) * (bg - gap).clamp(min=0))
    hue = torch.rand(n, 3, generator=generator)
    saturation = uniform(n, 0.0, 0.6, generator)[:, None]
    color = target[:, None] + saturation * (hue - luminance(hue)[:, None])
    return color.clamp(0, 1)


def place_theta(center: torch.Tensor, size: torch.Tensor, angle: torch.Tensor, canvas: int) -> torch.Tensor:
    """Affine maps (n, 2, 3) for `F.affine_grid` that put a square sprite on a canvas.

    Args:
        center: sprite centres (n, 2) as (x, y) in canvas pixels.
        size: sprite sides (n,) in canvas pixels.
        angle: counter-clockwise rotations (n,) in radians.
        canvas: canvas side in pixels.
    """
    scale = canvas / size  # output -> sprite coordinates: undo the translation, rotation and scaling
    c = center / canvas * 2 - 1
    cos, sin = torch.cos(angle), torch.sin(angle)
    # rotation by -angle in image coordinates (y down) turns the sprite counter-clockwise on screen
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) * scale[:, None, None]
    shift = -(rot @ c[:, :, None])
    return torch.cat([rot, shift], dim=2)


def paste(
        canvas: torch.Tensor,
        sprites: torch.Tensor,
        theta: torch.Tensor,
        color: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Alpha-blend ink sprites onto canvases.

    Args:
        canvas: (n, 3, H, W) images in [0, 1].
        sprites: (n, 1, h, w) ink coverage in [0, 1] (uint8 0..255 is accepted too).
        theta: (n, 2, 3) maps from `place_theta`.
        color: (n, 3) ink colours.
        mask: optional (n,) bools; canvases where it is False are left untouched.

    Returns:
        The new canvases and the pasted coverage (n, 1, H, W).
    """
    if sprites.dtype == torch.uint8:
        sprites = sprites.float() / 255.0
    grid = F.affine_grid(theta, [canvas.shape[0], 1, *canvas.shape[2:]], align_corners=False)
    alpha = F.grid_sample(sprites, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if mask is not None:
        alpha = alpha * mask.to(alpha)[:, None, None, None]
    return canvas * (1 - alpha) + color[:, :, None, None] * alpha, alpha
