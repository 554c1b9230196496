"""Canvas composition: placement geometry, colours, textures."""
from __future__ import annotations

import math

import torch

from dytune.mini import canvas


def quadrant_ink(alpha: torch.Tensor) -> torch.Tensor:
    """Ink per quadrant [top-left, top-right, bottom-left, bottom-right] of (1, 1, H, W) coverage."""
    h, w = alpha.shape[-2] // 2, alpha.shape[-1] // 2
    a = alpha[0, 0]
    return torch.stack([a[:h, :w].sum(), a[:h, w:].sum(), a[h:, :w].sum(), a[h:, w:].sum()])


def test_place_theta_translates_scales_and_rotates_counter_clockwise():
    sprite = torch.zeros(1, 1, 16, 16)
    sprite[..., :8, 8:] = 1.0  # ink in the top-right quadrant
    blank = torch.zeros(1, 3, 64, 64)
    color = torch.ones(1, 3)

    def place(cx, cy, side, degrees):
        theta = canvas.place_theta(torch.tensor([[cx, cy]]), torch.tensor([side]),
                                   torch.tensor([math.radians(degrees)]), 64)
        return canvas.paste(blank, sprite, theta, color)[1]

    upright = place(32, 32, 64, 0)
    assert quadrant_ink(upright).argmax() == 1
    assert abs(upright.sum() / (32 * 32) - 1) < 0.05  # full-canvas placement: a quarter inked (edges blur)
    assert quadrant_ink(place(32, 32, 64, 90)).argmax() == 0  # counter-clockwise: top-right -> top-left
    assert quadrant_ink(place(32, 32, 64, -90)).argmax() == 3
    small = place(48, 16, 16, 0)  # a 16-px sprite centred at x=48, y=16: ink within x 48..56, y 8..16
    ys, xs = small[0, 0].nonzero(as_tuple=True)
    assert 47 <= xs.min() and xs.max() <= 56 and 7 <= ys.min() and ys.max() <= 16
    assert abs(small.sum() / (8 * 8) - 1) < 0.15


def test_paste_mask_and_uint8_sprites():
    bg = torch.full((2, 3, 8, 8), 0.25)
    sprite = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    theta = canvas.place_theta(torch.full((2, 2), 4.0), torch.full((2,), 8.0), torch.zeros(2), 8)
    out, alpha = canvas.paste(bg, sprite, theta, torch.ones(2, 3), mask=torch.tensor([True, False]))
    assert torch.allclose(out[1], bg[1]) and alpha[1].sum() == 0
    assert out[0].mean() > 0.9


def test_textures_and_contrasting_colors():
    gen = torch.Generator().manual_seed(0)
    tex = canvas.textures(64, 32, gen, contrast=0.35)
    assert tex.shape == (64, 3, 32, 32) and 0 <= tex.min() and tex.max() <= 1
    spread = tex.flatten(2).amax(2) - tex.flatten(2).amin(2)
    assert spread.max() <= 0.35 + 1e-5 and spread.mean() > 0.05  # textured, but fainter than the ink
    assert canvas.textures(4, 16, gen, contrast=0.0).flatten(2).std(2).max() < 1e-6  # plain
    ink = canvas.contrasting_colors(tex, gen)
    gap = (canvas.luminance(ink) - canvas.luminance(tex.mean(dim=(2, 3)))).abs()
    assert gap.min() > 0.3
