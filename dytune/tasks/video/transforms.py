"""Clip transforms: each acts on a whole clip [T, C, H, W] (uint8 or float; [S, T, C, H, W] after `SpatialCrops`) at
once, drawing every random choice once per call from torch's global generator, so all frames of a clip get the same
crop, flip and augmentation."""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .samplers import uniform_int

__all__ = ["ClipCompose", "ToFloat", "Normalize", "ShortSideResize", "RandomCrop", "CenterCrop", "SpatialCrops",
           "RandomHorizontalFlip", "RandomResizedCrop", "ClipRandAugment", "RAND_AUGMENT_OPS"]


class ClipCompose:
    """Apply clip transforms in order.

    Args:
        steps: Callables clip -> clip.
    """

    def __init__(self, steps: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.steps = list(steps)

    @property
    def num_views(self) -> int:
        """Spatial views the transform makes of one clip (SpatialCrops)."""
        return math.prod(getattr(step, "num_views", 1) for step in self.steps)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            clip = step(clip)
        return clip

    def __repr__(self) -> str:
        return "ClipCompose(\n" + "".join(f"    {step!r},\n" for step in self.steps) + ")"


class ToFloat:
    """uint8 0..255 -> float32 0..1."""

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return clip.float().div_(255) if clip.dtype == torch.uint8 else clip.float()

    def __repr__(self) -> str:
        return "ToFloat()"


class Normalize:
    """(clip - mean) / std per channel (channel axis -3).

    Args:
        mean: Per-channel means.
        std: Per-channel standard deviations.
    """

    def __init__(self, mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5)) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.dtype == torch.uint8:
            raise TypeError("Normalize: expected a float clip; put ToFloat() before it")
        mean = torch.tensor(self.mean, dtype=clip.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=clip.dtype).view(-1, 1, 1)
        return (clip - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def _resize(clip: torch.Tensor, size: Tuple[int, int], antialias: bool) -> torch.Tensor:
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    lead = clip.shape[:-3]
    x = clip.reshape(-1, *clip.shape[-3:])
    out = F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False, antialias=antialias)
    if clip.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out.reshape(*lead, *out.shape[-3:])


class ShortSideResize:
    """Resize (bicubic) so the short side is `size`, keeping the aspect ratio; a (low, high) pair draws the side
    uniformly from the integers in [low, high] per clip (short-side jitter).

    Args:
        size: The short side, or its (low, high) range.
        antialias: Low-pass before downscaling (the official code does not; it matters for small inputs).
    """

    def __init__(self, size: Union[int, Tuple[int, int]], antialias: bool = True) -> None:
        low, high = (size, size) if isinstance(size, int) else tuple(size)
        if not 1 <= low <= high:
            raise ValueError(f"ShortSideResize(size={size!r}): expected a side >= 1 or a range low <= high")
        self.low, self.high, self.antialias = int(low), int(high), antialias

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        side = self.low if self.low == self.high else uniform_int(self.low, self.high, None)
        h, w = clip.shape[-2:]
        size = (side, max(1, round(w * side / h))) if h <= w else (max(1, round(h * side / w)), side)
        return _resize(clip, size, self.antialias)

    def __repr__(self) -> str:
        size = self.low if self.low == self.high else (self.low, self.high)
        return f"ShortSideResize(size={size}, antialias={self.antialias})"


def _check_fits(clip: torch.Tensor, size: int, name: str) -> None:
    h, w = clip.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"{name}({size}): the clip is {h}x{w}, smaller than the crop; resize it first")


class RandomCrop:
    """A random `size` x `size` window, the same for every frame.

    Args:
        size: Crop side.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        _check_fits(clip, self.size, "RandomCrop")
        h, w = clip.shape[-2:]
        top, left = uniform_int(0, h - self.size, None), uniform_int(0, w - self.size, None)
        return clip[..., top:top + self.size, left:left + self.size]

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class CenterCrop:
    """The central `size` x `size` window.

    Args:
        size: Crop side.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        _check_fits(clip, self.size, "CenterCrop")
        h, w = clip.shape[-2:]
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return clip[..., top:top + self.size, left:left + self.size]

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class SpatialCrops:
    """`num_views` square windows along the long side, evenly from its start to its end (3: start, centre, end):
    [T, C, H, W] -> [num_views, T, C, size, size].

    Args:
        size: Crop side.
        num_views: Number of windows.
    """

    def __init__(self, size: int, num_views: int = 3) -> None:
        if num_views < 1:
            raise ValueError(f"SpatialCrops(num_views={num_views}): expected an integer >= 1")
        self.size, self.num_views = size, num_views

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        _check_fits(clip, self.size, "SpatialCrops")
        h, w = clip.shape[-2:]
        crops = []
        for v in range(self.num_views):
            frac = 0.5 if self.num_views == 1 else v / (self.num_views - 1)
            top = round((h - self.size) * (frac if h > w else 0.5))
            left = round((w - self.size) * (frac if w >= h else 0.5))
            crops.append(clip[..., top:top + self.size, left:left + self.size])
        return torch.stack(crops)

    def __repr__(self) -> str:
        return f"SpatialCrops({self.size}, num_views={self.num_views})"


class RandomHorizontalFlip:
    """Mirror the whole clip with probability `p`.

    Args:
        p: Flip probability.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return clip.flip(-1) if torch.rand(()).item() < self.p else clip

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomResizedCrop:
    """A random window of `scale` x the area and aspect ratio in `ratio` (log-uniform), resized to `size` x `size`
    (bicubic); after `attempts` failed draws, the largest central window within `ratio`.

    Args:
        size: Output side.
        scale: Range of the window's share of the frame area.
        ratio: Range of the window's aspect ratio (width / height).
        attempts: Draws before the central fallback.
        antialias: Low-pass before downscaling.
    """

    def __init__(self, size: int, scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10, antialias: bool = True) -> None:
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)
        self.attempts, self.antialias = attempts, antialias

    def window(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """(top, left, h, w) of one draw."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(self.attempts):
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(()).item())
            aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * torch.rand(()).item())
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return uniform_int(0, height - h, None), uniform_int(0, width - w, None), h, w
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            h, w = height, round(height * self.ratio[1])
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        top, left, h, w = self.window(*clip.shape[-2:])
        return _resize(clip[..., top:top + h, left:left + w], (self.size, self.size), self.antialias)

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"


def _enhance(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> Callable[..., torch.Tensor]:
    """An enhancement op whose factor is 1 +- 0.9 x level (timm's "increasing" colour, contrast, ...)."""
    return lambda clip, level, sign, fill: fn(clip, max(0.0, 1.0 + sign * 0.9 * level))


def _solarize_add(clip: torch.Tensor, level: float, sign: float, fill: int) -> torch.Tensor:
    added = (clip.int() + int(110 * level)).clamp_(max=255).to(clip.dtype)
    return torch.where(clip < 128, added, clip)


def _solarize(clip: torch.Tensor, level: float, sign: float, fill: int) -> torch.Tensor:
    threshold = 256 - int(256 * level)
    return clip if threshold > 255 else TF.solarize(clip, threshold)


def _rotate(clip: torch.Tensor, level: float, sign: float, fill: int) -> torch.Tensor:
    return TF.rotate(clip, sign * 30.0 * level, interpolation=InterpolationMode.BILINEAR, fill=fill)


def _affine(clip: torch.Tensor, fill: int, translate: Sequence[float] = (0.0, 0.0),
            shear: Sequence[float] = (0.0, 0.0)) -> torch.Tensor:
    return TF.affine(clip, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear),
                     interpolation=InterpolationMode.BILINEAR, fill=fill)


def _shear(axis: int) -> Callable[..., torch.Tensor]:
    def op(clip: torch.Tensor, level: float, sign: float, fill: int) -> torch.Tensor:
        degrees = math.degrees(math.atan(sign * 0.3 * level))
        return _affine(clip, fill, shear=(degrees, 0.0) if axis == 0 else (0.0, degrees))
    return op


def _translate(axis: int) -> Callable[..., torch.Tensor]:
    def op(clip: torch.Tensor, level: float, sign: float, fill: int) -> torch.Tensor:
        shift = sign * 0.45 * level * clip.shape[-1 - axis]
        return _affine(clip, fill, translate=(shift, 0.0) if axis == 0 else (0.0, shift))
    return op


# name -> op(clip uint8 [..., C, H, W], level in [0, 1], sign in {-1, 1}, fill): timm's "increasing" RandAugment set
RAND_AUGMENT_OPS: Dict[str, Callable[..., torch.Tensor]] = {
    "AutoContrast": lambda clip, level, sign, fill: TF.autocontrast(clip),
    "Equalize": lambda clip, level, sign, fill: TF.equalize(clip),
    "Invert": lambda clip, level, sign, fill: TF.invert(clip),
    "Rotate": _rotate,
    "PosterizeIncreasing": lambda clip, level, sign, fill: TF.posterize(clip, 4 - int(4 * level)),
    "SolarizeIncreasing": _solarize,
    "SolarizeAdd": _solarize_add,
    "ColorIncreasing": _enhance(TF.adjust_saturation),
    "ContrastIncreasing": _enhance(TF.adjust_contrast),
    "BrightnessIncreasing": _enhance(TF.adjust_brightness),
    "SharpnessIncreasing": _enhance(TF.adjust_sharpness),
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateXRel": _translate(0),
    "TranslateYRel": _translate(1),
}


class ClipRandAugment:
    """RandAugment with the same ops and magnitudes for every frame of a clip (timm's `rand-m7-n4-mstd0.5-inc1`).

    Each call draws `num_ops` ops uniformly with replacement; each is applied with probability `prob` at a magnitude
    drawn from N(magnitude, magnitude_std) clipped to [0, magnitude_max], with a random sign where the op has one.
    Geometric ops interpolate bilinearly (bicubic is not available for tensors) and fill with `fill`.

    Args:
        num_ops: Ops per clip.
        magnitude: Mean magnitude on the 0..magnitude_max scale.
        magnitude_std: Standard deviation of the magnitude (0: fixed).
        prob: Probability of applying each drawn op.
        magnitude_max: Top of the magnitude scale.
        fill: Grey level of pixels uncovered by geometric ops.
        ops: Op names from RAND_AUGMENT_OPS (all 15 by default).
    """

    def __init__(self, num_ops: int = 4, magnitude: float = 7.0, magnitude_std: float = 0.5, prob: float = 0.5,
                 magnitude_max: float = 10.0, fill: int = 128, ops: Optional[Sequence[str]] = None) -> None:
        self.ops = list(RAND_AUGMENT_OPS) if ops is None else list(ops)
        unknown = [op for op in self.ops if op not in RAND_AUGMENT_OPS]
        if unknown or not self.ops:
            raise ValueError(f"ClipRandAugment(ops={ops!r}): unknown op(s) {unknown}; "
                             f"choose from {', '.join(RAND_AUGMENT_OPS)}")
        self.num_ops, self.magnitude, self.magnitude_std = num_ops, magnitude, magnitude_std
        self.prob, self.magnitude_max, self.fill = prob, magnitude_max, fill

    def draw(self) -> List[Tuple[str, float, float]]:
        """The (op, level in [0, 1], sign) applied by one call; ops skipped by `prob` are left out."""
        chosen = []
        for i in torch.randint(len(self.ops), (self.num_ops,)).tolist():
            if torch.rand(()).item() >= self.prob:
                continue
            m = self.magnitude
            if self.magnitude_std > 0:
                m += self.magnitude_std * torch.randn(()).item()
            level = min(max(m, 0.0), self.magnitude_max) / self.magnitude_max
            sign = -1.0 if torch.rand(()).item() < 0.5 else 1.0
            chosen.append((self.ops[i], level, sign))
        return chosen

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.dtype != torch.uint8:
            raise TypeError("ClipRandAugment: expected a uint8 clip (raw frames, before ToFloat)")
        for name, level, sign in self.draw():
            clip = RAND_AUGMENT_OPS[name](clip, level, sign, self.fill)
        return clip

    def __repr__(self) -> str:
        return (f"ClipRandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, "
                f"magnitude_std={self.magnitude_std}, prob={self.prob})")
