"""ADE20K / COCO-Stuff folders on generated files, every bad input, and the joint transforms."""
import numpy as np
import pytest
import torch
from PIL import Image

from dytune.tasks.segmentation.data import (ADE20K, COCO_STUFF_CLASSES, COCO_STUFF_RAW_IDS, COCOStuff,
                                      Normalize, Pad, PhotoMetricDistortion, RandomCrop, RandomFlip, RandomResize,
                                      Resize, colorize, eval_transforms, make_palette, train_transforms)


def write_pair(root, split, stem, labels, image_suffix=".jpg", ann_suffix=".png", image_size=None):
    labels = np.asarray(labels, dtype=np.uint8)
    h, w = image_size or labels.shape
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(stem))
    pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "images" / split / (stem + image_suffix))
    Image.fromarray(labels, mode="L").save(root / "annotations" / split / (stem + ann_suffix))


def ade_root(tmp_path, split="training"):
    root = tmp_path / "ade"
    write_pair(root, split, "a", [[0, 1, 2], [150, 255, 7]])
    write_pair(root, split, "b", np.full((4, 5), 3))
    return root


def test_ade20k_layout_reduces_labels_by_one(tmp_path):
    data = ADE20K(ade_root(tmp_path), "train")  # alias of "training"
    assert len(data) == 2 and data.split == "training" and data.num_classes == 150 == len(data.classes)
    assert data.classes[0] == "wall" and data.classes[-1] == "flag" and data.palette.shape == (150, 3)
    image, mask = data[0]
    assert image.shape == (3, 2, 3) and image.dtype == torch.float32 and -1.0 <= image.min() <= image.max() <= 1.0
    assert mask.dtype == torch.int64 and mask.tolist() == [[255, 0, 1], [149, 255, 6]]
    raw, _ = data.load(1)
    assert raw.shape == (3, 4, 5) and raw.max() > 1  # 0..255 before the transforms


def test_ade20k_with_own_classes(tmp_path):
    root = tmp_path / "small"
    write_pair(root, "validation", "x", [[0, 1], [2, 3]])
    data = ADE20K(root, "val", classes=("bg", "a", "b"))
    assert data[0][1].tolist() == [[255, 0], [1, 2]]
    write_pair(root, "validation", "y", [[4, 1], [2, 3]])
    with pytest.raises(ValueError, match=r"y\.png: label values \[4\] are outside the 3 classes; expected raw values "
                                         r"0\.\.3, 255"):
        ADE20K(root, "val", classes=("bg", "a", "b"))[1]


def test_coco_stuff_train_ids_and_raw_ids(tmp_path):
    assert len(COCO_STUFF_CLASSES) == len(COCO_STUFF_RAW_IDS) == 171
    assert COCO_STUFF_RAW_IDS[11] == 12 and COCO_STUFF_RAW_IDS[80] == 91 and COCO_STUFF_RAW_IDS[-1] == 181
    root = tmp_path / "coco"
    write_pair(root, "train2017", "000000000001", [[0, 170], [255, 5]], ann_suffix="_labelTrainIds.png")
    data = COCOStuff(root, "train")
    assert data.annotations == "train_ids" and data.num_classes == 171
    assert data[0][1].tolist() == [[0, 170], [255, 5]]

    raw = tmp_path / "coco_raw"
    write_pair(raw, "val2017", "000000000002", [[0, 12], [181, 255]])
    data = COCOStuff(raw, "val")
    assert data.annotations == "raw" and data[0][1].tolist() == [[0, 11], [170, 255]]
    write_pair(raw, "val2017", "000000000003", [[11, 12], [200, 255]])  # 11 is an unused COCO id
    with pytest.raises(ValueError, match=r"000000000003\.png: label values \[11, 200\] are outside the 171 classes"):
        COCOStuff(raw, "val")[1]
    with pytest.raises(ValueError, match="annotations='ids'"):
        COCOStuff(raw, "val", annotations="ids")


def test_image_without_annotation_names_both_files(tmp_path):
    root = ade_root(tmp_path)
    (root / "annotations" / "training" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 2 images have no annotation: .*images/training/b\.jpg has no "
                                                r".*annotations/training/b\.png"):
        ADE20K(root, "training")


def test_annotation_of_another_size_names_both_files(tmp_path):
    root = ade_root(tmp_path)
    write_pair(root, "training", "c", np.ones((4, 5)), image_size=(6, 5))
    data = ADE20K(root, "training")
    with pytest.raises(ValueError, match=r"annotations/training/c\.png is 5x4 but its image .*images/training/c\.jpg "
                                         r"is 5x6"):
        data[2]


def test_labels_outside_the_classes_name_the_file_and_values(tmp_path):
    root = ade_root(tmp_path)
    write_pair(root, "training", "d", [[151, 200], [1, 0]])
    with pytest.raises(ValueError, match=r"d\.png: label values \[151, 200\] are outside the 150 classes; expected "
                                         r"raw values 0\.\.150, 255"):
        ADE20K(root, "training")[2]


def test_colour_annotations_and_empty_or_missing_folders(tmp_path):
    root = ade_root(tmp_path)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "annotations" / "training" / "a.png")
    with pytest.raises(ValueError, match="a label map must have one channel .* got mode RGB"):
        ADE20K(root, "training")[0]
    (root / "images" / "validation").mkdir()
    (root / "annotations" / "validation").mkdir()
    with pytest.raises(ValueError, match=r"images/validation: no \*\.jpg images"):
        ADE20K(root, "validation")
    with pytest.raises(FileNotFoundError, match=r"ade/images/test: folder not found; expected "
                                                r".*ade/images/test/\*\.jpg and .*ade/annotations/test/\*\.png"):
        ADE20K(root, "test")


def test_palette_and_colorize():
    palette = make_palette(150)
    assert palette.shape == (150, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette.tolist()}) == 150
    rgb = colorize(torch.tensor([[0, 255], [149, 1]]), palette)
    assert rgb.shape == (2, 2, 3) and rgb[0, 1].tolist() == [0, 0, 0] and rgb[1, 0].tolist() == palette[149].tolist()


def pair(h=40, w=60, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 5, (h, w), generator=gen)
    image = mask[None].float().expand(3, -1, -1) * 50  # every channel encodes the label
    return image.clone(), mask


def test_resize_keeps_the_ratio_within_both_bounds():
    image, mask = pair(100, 300)
    out, m = Resize((2048, 512))(image, mask)
    assert out.shape == (3, 512, 1536) and m.shape == (512, 1536)  # short side reaches 512 first
    out, m = Resize((2048, 512))(*pair(100, 1000))
    assert out.shape == (3, 205, 2048)  # the long side bound wins
    out, m = Resize((512, 128), resize_mask=False)(*pair(128, 128))
    assert out.shape == (3, 128, 128) and m.shape == (128, 128)
    out, m = Resize((2048, 512), resize_mask=False)(image, mask)
    assert out.shape == (3, 512, 1536) and m.shape == (100, 300)
    assert set(Resize((90, 30))(image, mask)[1].unique().tolist()) <= set(range(5))  # nearest: no new labels


def test_random_resize_ratio_range():
    torch.manual_seed(0)
    sides = {RandomResize((200, 50), (0.5, 2.0))(*pair(50, 50))[0].shape[-1] for _ in range(30)}
    assert min(sides) >= 25 and max(sides) <= 100 and len(sides) > 5


def test_random_crop_size_and_category_ratio():
    torch.manual_seed(0)
    image, mask = pair(40, 60)
    out, m = RandomCrop(16)(image, mask)
    assert out.shape == (3, 16, 16) and torch.equal(out[0] / 50, m.float())  # image and mask cropped together
    out, m = RandomCrop((64, 30))(image, mask)
    assert out.shape == (3, 40, 30)  # a side smaller than the crop is kept whole
    # a mask that is one class except a small corner: crops avoid being >= 75 % one class when possible
    mask = torch.zeros(40, 40, dtype=torch.long)
    mask[:20, :20] = 1
    shares = []
    for _ in range(20):
        _, m = RandomCrop(20, cat_max_ratio=0.75)(mask[None].float(), mask)
        shares.append(float((m == 0).float().mean()))
    assert sum(s < 0.75 for s in shares) > 15


def test_flip_pad_normalize_and_photometric_distortion():
    torch.manual_seed(0)
    image, mask = pair(8, 10)
    out, m = RandomFlip(1.0)(image, mask)
    assert torch.equal(m, mask.flip(-1)) and torch.equal(out[0] / 50, m.float())
    out, m = Pad(12)(image, mask)
    assert out.shape == (3, 12, 12) and (out[:, 8:] == 0).all() and (m[:, 10:] == 255).all()
    out, _ = Normalize((0.5,) * 3, (0.5,) * 3)(torch.tensor([0.0, 127.5, 255.0]).view(3, 1, 1), mask)
    assert out.flatten().tolist() == [-1.0, 0.0, 1.0]
    colours = torch.rand(3, 16, 16) * 255
    for _ in range(10):
        out, m = PhotoMetricDistortion()(colours, mask)
        assert out.shape == colours.shape and 0 <= out.min() and out.max() <= 255 and m is mask


def test_train_and_eval_pipelines():
    torch.manual_seed(0)
    image, mask = pair(100, 150)
    t = train_transforms(crop_size=64, scale=(256, 64))
    for _ in range(5):
        out, m = t(image, mask)
        assert out.shape == (3, 64, 64) and m.shape == (64, 64) and m.dtype == torch.int64
        assert set(m.unique().tolist()) <= set(range(5)) | {255}
    out, m = eval_transforms(scale=(256, 64))(image, mask)
    assert out.shape == (3, 64, 96) and m.shape == (100, 150)
