"""Clip transforms (one crop, flip and augmentation per clip) and the recipes' transforms."""
import pytest
import torch

from dytune.tasks.video.recipes import kinetics_recipe, ssv2_recipe
from dytune.tasks.video.transforms import (RAND_AUGMENT_OPS, ClipRandAugment, Normalize, RandomResizedCrop,
                                           ShortSideResize, SpatialCrops)


def _clip(t=8, h=48, w=64, seed=0):
    frame = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return frame.expand(t, 3, h, w).clone()


def test_kinetics_transforms_shapes_and_one_crop_per_clip():
    recipe = kinetics_recipe(img_size=32, num_frames=8, stride=2)
    torch.manual_seed(0)
    for _ in range(5):
        out = recipe.train_transform(_clip())
        assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
        assert torch.equal(out, out[:1].expand_as(out))  # the same crop and flip for every frame
    test = recipe.test_transform(_clip())
    assert test.shape == (8, 3, 32, 32) and recipe.test_views == 3
    assert -1.2 <= float(test.min()) < -0.5 and 0.5 < float(test.max()) <= 1.2  # mean/std 0.5, bicubic overshoot


def test_short_side_jitter_range():
    resize = ShortSideResize((32, 37))
    torch.manual_seed(0)
    sides = set()
    for _ in range(60):
        h, w = resize(_clip(t=1)).shape[-2:]
        sides.add(h)
        assert w == round(64 * h / 48)
    assert sides == set(range(32, 38))
    assert kinetics_recipe().train_transform.steps[1].high == 258  # round(224 * 1.15)


def test_spatial_crops_sit_at_start_centre_and_end():
    clip = torch.arange(64, dtype=torch.float32).expand(2, 3, 32, 64).clone()  # pixel value = its column
    views = SpatialCrops(32, 3)(clip)
    assert views.shape == (3, 2, 3, 32, 32)
    assert [int(v[0, 0, 0, 0]) for v in views] == [0, 16, 32]
    recipe = ssv2_recipe(img_size=32)
    assert recipe.test_transform(_clip()).shape == (3, 8, 3, 32, 32) and recipe.test_views == 3


@pytest.mark.parametrize("op", list(RAND_AUGMENT_OPS))
def test_every_rand_augment_op_runs_on_clips(op):
    augment = ClipRandAugment(num_ops=1, magnitude=9, prob=1.0, ops=[op])
    torch.manual_seed(1)
    out = augment(_clip(t=3))
    assert out.shape == (3, 3, 48, 64) and out.dtype == torch.uint8
    assert torch.equal(out, out[:1].expand_as(out))


def test_rand_augment_applies_the_same_ops_to_all_frames():
    augment = ClipRandAugment()
    torch.manual_seed(0)
    changed = 0
    for seed in range(12):
        clip = _clip(seed=seed)
        out = augment(clip)
        assert torch.equal(out, out[:1].expand_as(out))
        changed += not torch.equal(out, clip)
    assert changed >= 6
    with pytest.raises(ValueError, match="unknown op"):
        ClipRandAugment(ops=["Blur"])
    with pytest.raises(TypeError, match="uint8"):
        augment(_clip().float())


def test_ssv2_training_transform_has_no_flip_and_fixed_size():
    recipe = ssv2_recipe(img_size=32)
    assert not any("Flip" in type(s).__name__ for s in recipe.train_transform.steps)
    torch.manual_seed(0)
    out = recipe.train_transform(_clip())
    assert out.shape == (8, 3, 32, 32) and torch.equal(out, out[:1].expand_as(out))
    rrc = RandomResizedCrop(32, scale=(2.0, 3.0))  # never fits: the central fallback
    assert rrc.window(48, 64) == (0, 0, 48, 64) and rrc(_clip()).shape == (8, 3, 32, 32)


def test_normalize_needs_float():
    with pytest.raises(TypeError, match="ToFloat"):
        Normalize()(_clip())
