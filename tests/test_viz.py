"""Skip maps drawn on the token grid the backbone really used, for inputs that are not whole patches."""
import torch
from PIL import Image

import dytune
from dytune.viz import _keep_map, plot_skip_maps
from tests.conftest import tiny_vit


def test_a_padded_grid_is_cropped_to_the_image_and_a_floored_one_leaves_the_rest_skipped():
    mask = torch.arange(24) % 3 == 0  # 4 x 6 tokens of 8 px: a 32 x 43 image padded to 32 x 48
    keep = _keep_map(mask, (4, 6), (8, 8), (32, 43))
    assert keep.shape == (32, 43)
    assert all(keep[y, x] == mask[(y // 8) * 6 + x // 8] for y in range(32) for x in range(43))
    floored = _keep_map(torch.ones(20, dtype=torch.bool), (4, 5), (8, 8), (32, 43))
    assert floored.shape == (32, 43) and floored[:, :40].all() and not floored[:, 40:].any()


def test_skip_maps_of_a_dynamically_padded_vit_on_a_70_x_45_image(tmp_path):
    model = dytune.convert(tiny_vit(dynamic_img_size=True, dynamic_img_pad=True), dytune.DyTConfig(bottleneck=4))
    path = plot_skip_maps(model.eval(), torch.randn(1, 3, 45, 70), tmp_path / "map.png")
    assert [m.shape for m in dytune.keep_masks(model)] == [(1, 6 * 9)] * len(dytune.keep_masks(model))
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size[0] > picture.size[1]
