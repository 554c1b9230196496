"""`dytune pretrain`: train the mini ViT backbone from scratch on the source task, Fashion-MNIST items on canvases.

The source task (classify the clothing item) differs from every mini-VTAB task (digits, letters, fonts, counting,
location, orientation, scale), so adapting to those measures transfer, as VTAB-1K does for ImageNet backbones.
Images are rendered on the fly from the 60,000 training items: a new placement, size, rotation, colour and
background texture each time the item is drawn. A curriculum starts from large centred white items on black
canvases (difficulty 0, Fashion-MNIST as published), holds it for `--easy-epochs`, then moves linearly over
`--curriculum-epochs` to the full task (difficulty 1: any position, sizes 20-48 px, +-20 degrees, random colours on
textured backgrounds), which a ViT from scratch cannot start on (see docs/mini_backbone.md). The held-out test set
renders the 10,000 test items once, at difficulty 1.

Multi-task scenes (`--max-items N` with N > 1, or any `--aux-weight` / `--patch-weight` > 0): each canvas holds 1 to N
items of varied size (log-uniform 14-48 px, smaller when there are more) placed to avoid each other, a share
`--full-rotation` of them rotated anywhere in 360 degrees. The 10-class head names the largest item; auxiliary linear
heads on the same features (the class token) predict the number of items, the set of classes present, the largest
item's position (x and y, 8 bins each), size (8 log bins) and rotation (8 bins of 45 degrees), and which cells of a
4 x 4 grid hold an item centre (weight `--aux-weight` each); a linear head on every patch token predicts the class of
the item covering that patch or background (`--patch-weight`). So the class token carries count, position, size and
orientation, which a single-item classifier learns to ignore. The auxiliary heads are saved in the checkpoint but
not exported. With the defaults (one item, no auxiliary loss) training is exactly the single-item task above.

Training runs on the engine's optimisation step, learning-rate schedule, CSV log and evaluation
(`dytune.engine.loop.OptimizerStep`, `engine.optim.LrSchedule`, `engine.csvlog.CsvLog`, `engine.evaluation.evaluate`),
the ones `dytune train` uses; the step-indexed source data (below) and the multi-task loss are its own.

Resumable, on the engine's run folder (`dytune.engine.rundir`, as `dytune train`): a lock refuses a second writer, and
every `--ckpt-every` steps `last/` (`state.pt`: model, optimizer, step, RNG states) is written as one unit with a
manifest, the previous one kept as `last.prev`, the fallback when `last/` does not verify. With `log.csv` and
`config.json` beside it, rerunning the same command continues. A run folder of an older dytune (`last.pt`) resumes
too. The data of step s depends only on (seed, s).
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import timm
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..utils.io import atomic_write
from .canvas import contrasting_colors, paste, place_theta, textures, uniform
from ..data.sources import FASHION_MNIST_CLASSES, load_fashion_mnist
from ..utils.distributed import DistEnv
from ..engine.csvlog import CsvLog
from ..engine.rundir import RunLock, clean_stale_temporaries, has_checkpoint, read_checkpoint, write_checkpoint
from ..engine.seeding import rng_state, set_rng_state
from ..engine.evaluation import evaluate as evaluate_model
from ..engine.loop import OptimizerStep
from ..engine.optim import LrSchedule, param_groups

__all__ = ["AUX_BINS", "AuxHeads", "PretrainConfig", "build_backbone", "evaluate", "export", "load_last",
           "multitask_loss", "normalize", "render_scene", "render_source", "scene_batches", "source_batches", "train"]

IMG_SIZE = 64
MEAN = STD = (0.5, 0.5, 0.5)
TIMM_NAME = "vit_tiny_patch16_224"
# options of the multi-task source and their defaults, which reproduce the single-item task exactly; a run folder
# whose config.json predates them (or leaves them out: they are not written when at their defaults) has these values
MULTITASK_DEFAULTS = {"max_items": 1, "single_share": 0.0, "full_rotation": 0.0, "aux_weight": 0.0,
                      "patch_weight": 0.0}
# options written to config.json only when they differ from these defaults (config.json of a default run as before)
OPTIONAL_DEFAULTS = {**MULTITASK_DEFAULTS, "head_only": False}
SCENE_MIN_SIDE, SCENE_MAX_SIDE = 14.0, 48.0  # item sides in pixels on a 64-px canvas (largest possible item)
AUX_BINS = 8  # bins of the position, size and rotation targets
GRID = 4  # occupancy grid of the item centres
STATE_FILE = "state.pt"  # in the checkpoint folder <run>/last
LEGACY_LAST = "last.pt"  # the checkpoint file of run folders written before pretrain used checkpoint folders
LOG_FIELDS = ["step", "epoch", "difficulty", "lr", "train_loss", "train_acc", "test_acc", "img_per_s", "elapsed_s"]


@dataclass
class PretrainConfig:
    """One pre-training run (`dytune pretrain`'s flags; their help says what each does). Its settings are recorded in
    the run folder's config.json, except `threads` and `max_minutes`, which do not change what is learned.

    Args:
        out: Run folder (resumed if it exists).
        init: Weights to start from: a run's checkpoint (RUN/last, or an older run's RUN/last.pt) or an exported
            mini_vit.safetensors.
        embed_dim, depth, heads, patch_size, pool: The backbone.
        epochs, easy_epochs, curriculum_epochs: Passes over the training items; of them, at difficulty 0, then
            rising to 1.
        batch_size, lr, min_lr, warmup_epochs, weight_decay, label_smoothing, drop_path, clip_grad, seed: Training.
        eval_size, ckpt_every: Test images per log row; steps between checkpoint, log row and test.
        threads, max_minutes: Torch CPU threads; stop (resumably) after this wall time.
        head_only: Train only the 10-class head, the backbone frozen.
        max_items, single_share, full_rotation, aux_weight, patch_weight: The multi-task source
            (MULTITASK_DEFAULTS: the single-item task).
    """

    out: str = "runs/pretrain"
    init: Optional[str] = None
    embed_dim: int = 192
    depth: int = 6
    heads: int = 3
    patch_size: int = 8
    pool: str = "token"
    epochs: float = 4.0
    easy_epochs: float = 0.0
    curriculum_epochs: float = 1.0
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 0.2
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    drop_path: float = 0.0
    clip_grad: float = 1.0
    seed: int = 0
    eval_size: int = 2000
    ckpt_every: int = 100
    threads: int = 1
    max_minutes: Optional[float] = None
    head_only: bool = False
    max_items: int = MULTITASK_DEFAULTS["max_items"]
    single_share: float = MULTITASK_DEFAULTS["single_share"]
    full_rotation: float = MULTITASK_DEFAULTS["full_rotation"]
    aux_weight: float = MULTITASK_DEFAULTS["aux_weight"]
    patch_weight: float = MULTITASK_DEFAULTS["patch_weight"]


def render_source(
        items: torch.Tensor, generator: torch.Generator, difficulty: float = 1.0, size: int = IMG_SIZE,
) -> torch.Tensor:
    """Draw Fashion-MNIST items onto canvases, images (n, 3, size, size) in [0, 1].

    Args:
        items: (n, 28, 28) uint8 items.
        generator: source of randomness.
        difficulty: 0 = large (40-52 px) centred upright white items on black canvases; 1 = sizes 20-48 px anywhere
            on the canvas, rotated up to 20 degrees, in random colours on textured canvases. Values between
            interpolate.
        size: canvas side in pixels.
    """
    n = items.shape[0]
    d = float(min(max(difficulty, 0.0), 1.0))
    side = uniform(n, (40 - 20 * d) * size / 64, (52 - 4 * d) * size / 64, generator)
    reach = (size - side) / 2 * d
    center = size / 2 + reach[:, None] * uniform(2 * n, -1, 1, generator).view(n, 2)
    angle = uniform(n, -1, 1, generator) * math.radians(20) * d
    flip = torch.rand(n, generator=generator) < 0.5
    sprites = torch.where(flip[:, None, None], items.flip(-1), items)[:, None]
    # colour fades in with difficulty: at 0 white items on black canvases, as in Fashion-MNIST itself; a ViT from
    # scratch cannot start on random colours, which dominate its initial (near-uniform attention) features
    canvas = d * textures(n, size, generator, contrast=0.35 * d)
    color = (1 - d) + d * contrasting_colors(canvas, generator)
    image, _ = paste(canvas, sprites, place_theta(center, side, angle, size), color)
    return image


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] images to the backbone's input range (mean and std 0.5 per channel, as the VTAB recipe)."""
    return (images - MEAN[0]) / STD[0]


def build_backbone(embed_dim: int = 192, depth: int = 6, num_heads: int = 3, patch_size: int = 8,
                   num_classes: int = len(FASHION_MNIST_CLASSES), **kwargs: Any) -> nn.Module:
    """A timm ViT for IMG_SIZE x IMG_SIZE images with the given shape and random weights."""
    return timm.create_model(TIMM_NAME, pretrained=False, **model_kwargs(embed_dim, depth, num_heads, patch_size,
                                                                          num_classes, **kwargs))


def model_kwargs(embed_dim: int, depth: int, num_heads: int, patch_size: int, num_classes: int,
                 **kwargs: Any) -> Dict[str, Any]:
    """The `timm.create_model` keyword arguments of the backbone, as stored in its JSON."""
    return dict(img_size=IMG_SIZE, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                num_classes=num_classes, **kwargs)


def pool_kwargs(pool: str) -> Dict[str, Any]:
    """timm arguments for the image representation: the class token ("token") or the mean of the patch tokens."""
    if pool == "token":
        return {}
    if pool == "avg":
        return dict(class_token=False, global_pool="avg")
    raise ValueError(f"--pool must be 'token' or 'avg', got {pool!r}")


def source_batches(
        items: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, start_step: int,
        difficulty_at: Callable[[int], float],
) -> Iterator[Tuple[int, torch.Tensor, torch.Tensor]]:
    """Endless (step, images, labels) training batches from `start_step` on; epochs are shuffled passes.

    Step s of a seed always yields the same batch, so a resumed run sees the data an uninterrupted one would.
    """
    per_epoch = len(items) // batch_size
    step = start_step
    while True:
        epoch, index = divmod(step, per_epoch)
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        idx = order[index * batch_size:(index + 1) * batch_size]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        yield step, render_source(items[idx], gen, difficulty_at(step)), labels[idx]
        step += 1


def render_scene(
        items: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, max_items: int = 4,
        full_rotation: float = 0.5, size: int = IMG_SIZE, patch: int = 8, tries: int = 8, single_share: float = 0.0,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Draw scenes of 1 to `max_items` Fashion-MNIST items on textured canvases, with their multi-task targets.

    Args:
        items: (n, K, 28, 28) uint8 items, K >= max_items; item 0 of each row becomes the largest one. Only the
            first `count` of a row are drawn.
        labels: (n, K) their classes.
        generator: source of randomness.
        max_items: the number of items is uniform in 1..max_items ...
        single_share: ... except for this share of the scenes, which hold one item.
        full_rotation: probability that an item is rotated uniformly in [0, 360) degrees instead of +-20 degrees.
        size: canvas side in pixels.
        patch: patch side of the per-patch target.
        tries: candidate centres per item; the one farthest from the items already placed is kept.

    Returns:
        Images (n, 3, size, size) in [0, 1] and a dict of targets: `label` (class of the largest item), `count`
        (number of items - 1), `present` (n, 10) multi-hot classes, `x`, `y`, `size`, `angle` (bins of the largest
        item's centre, side and rotation), `occupancy` (n, GRID * GRID) multi-hot cells of the item centres and
        `patch` (n, patches) class of the item covering most of each patch, 10 for background.
    """
    n, k_max = items.shape[:2]
    if not 1 <= max_items <= k_max:
        raise ValueError(f"render_scene: max_items must be in 1..{k_max} (the items given per row), got {max_items}")
    items, labels = items[:, :max_items], labels[:, :max_items]
    scale = size / 64
    count = torch.randint(1, max_items + 1, (n,), generator=generator)
    count = torch.where(torch.rand(n, generator=generator) < single_share, torch.ones_like(count), count)
    lo = SCENE_MIN_SIDE * scale
    hi = (60.0 * scale / count.float().sqrt()).clamp(max=SCENE_MAX_SIDE * scale)
    u = torch.rand(n, max_items, generator=generator)
    side = (lo * (hi / lo)[:, None] ** u).sort(dim=1, descending=True).values  # log-uniform, item 0 the largest
    rotate = torch.rand(n, max_items, generator=generator) < full_rotation
    angle = torch.where(rotate, 2 * math.pi * torch.rand(n, max_items, generator=generator),
                        (2 * torch.rand(n, max_items, generator=generator) - 1) * math.radians(20))
    flip = torch.rand(n, max_items, generator=generator) < 0.5
    sprites = torch.where(flip[:, :, None, None], items.flip(-1), items)
    drawn = torch.arange(max_items)[None] < count[:, None]  # (n, K)
    canvas = textures(n, size, generator, contrast=0.35)
    centers = torch.zeros(n, max_items, 2)
    cover = torch.zeros(n, max_items, size // patch, size // patch)
    for j in range(max_items):
        s = side[:, j]
        cand = s[:, None, None] / 2 + (size - s)[:, None, None] * torch.rand(n, tries, 2, generator=generator)
        if j > 0:  # keep the candidate whose gap to the nearest item already placed is largest
            dist = (cand[:, :, None] - centers[:, None, :j]).norm(dim=-1)  # (n, tries, j)
            gap = dist - (s[:, None, None] + side[:, None, :j]) / 2
            best = gap.amin(-1).argmax(-1)
            cand = cand[torch.arange(n), best][:, None]
        centers[:, j] = cand[:, 0]
        color = contrasting_colors(canvas, generator)
        canvas, alpha = paste(canvas, sprites[:, j, None], place_theta(centers[:, j], s, angle[:, j], size), color,
                              mask=drawn[:, j])
        cover[:, j] = F.avg_pool2d(alpha, patch)[:, 0]
        # later items are drawn over earlier ones: what they cover is no longer the earlier items' ink
        cover[:, :j] = cover[:, :j] * (1 - cover[:, j:j + 1])
    classes = len(FASHION_MNIST_CLASSES)
    present = torch.zeros(n, classes).scatter_reduce(1, labels, drawn.float(), "amax")
    cell = (centers / size * GRID).long().clamp(0, GRID - 1)
    occupancy = torch.zeros(n, GRID * GRID).scatter_reduce(1, cell[..., 1] * GRID + cell[..., 0], drawn.float(),
                                                           "amax")
    best, owner = cover.flatten(2).max(dim=1)  # (n, patches): the item covering most of each patch
    patch_label = torch.where(best > 0.1, labels.gather(1, owner), torch.full_like(owner, classes))
    bins = AUX_BINS
    targets = {
        "label": labels[:, 0].clone(),
        "count": count - 1,
        "present": present,
        "x": (centers[:, 0, 0] / size * bins).long().clamp(0, bins - 1),
        "y": (centers[:, 0, 1] / size * bins).long().clamp(0, bins - 1),
        "size": (torch.log(side[:, 0] / lo) / math.log(SCENE_MAX_SIDE * scale / lo) * bins).long().clamp(0, bins - 1),
        # bins of 45 degrees centred on upright (bin 0 = -22.5..22.5 degrees), counter-clockwise
        "angle": torch.floor((angle[:, 0] + math.pi / bins) / (2 * math.pi / bins)).long() % bins,
        "occupancy": occupancy,
        "patch": patch_label,
    }
    return canvas, targets


def aux_sizes(max_items: int) -> Dict[str, int]:
    """Outputs of each auxiliary head on the pooled features."""
    return {"count": max_items, "present": len(FASHION_MNIST_CLASSES), "x": AUX_BINS, "y": AUX_BINS,
            "size": AUX_BINS, "angle": AUX_BINS, "occupancy": GRID * GRID}


MULTI_LABEL = ("present", "occupancy")


class AuxHeads(nn.Module):
    """Linear auxiliary heads: one per target on the pooled features, one on every patch token (classes + background)."""

    def __init__(self, dim: int, max_items: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({k: nn.Linear(dim, v) for k, v in aux_sizes(max_items).items()})
        self.patch = nn.Linear(dim, len(FASHION_MNIST_CLASSES) + 1)


def multitask_loss(model: nn.Module, aux: AuxHeads, images: torch.Tensor, targets: Dict[str, torch.Tensor],
                   aux_weight: float, patch_weight: float, label_smoothing: float = 0.0,
                   ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, float]]:
    """The source loss: CE of the 10-class head on the largest item + `aux_weight` x each auxiliary loss (CE, or BCE
    for the multi-label targets) + `patch_weight` x the per-patch CE. Returns the loss, the main logits and the
    accuracy (%) of each auxiliary head (multi-label: exact-set accuracy)."""
    feats = model.forward_features(normalize(images))
    pooled = model.forward_head(feats, pre_logits=True)
    logits = model.head(pooled)
    loss = F.cross_entropy(logits, targets["label"], label_smoothing=label_smoothing)
    parts: Dict[str, float] = {}
    for name, head in aux.heads.items():
        out = head(pooled)
        if name in MULTI_LABEL:
            term = F.binary_cross_entropy_with_logits(out, targets[name])
            parts[name] = 100 * ((out > 0).float() == targets[name]).all(-1).float().mean().item()
        else:
            term = F.cross_entropy(out, targets[name])
            parts[name] = 100 * (out.argmax(-1) == targets[name]).float().mean().item()
        loss = loss + aux_weight * term
    if patch_weight > 0:
        patches = aux.patch(feats[:, model.num_prefix_tokens:])
        loss = loss + patch_weight * F.cross_entropy(patches.flatten(0, 1), targets["patch"].flatten())
        parts["patch"] = 100 * (patches.argmax(-1) == targets["patch"]).float().mean().item()
    return loss, logits, parts


def scene_batches(
        items: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, start_step: int, max_items: int,
        full_rotation: float, patch: int = 8, single_share: float = 0.0,
) -> Iterator[Tuple[int, torch.Tensor, Dict[str, torch.Tensor]]]:
    """Endless (step, images, targets) multi-task batches from `start_step` on, a pure function of (seed, step).

    The largest item of each scene walks through shuffled epochs of the training items as in `source_batches`; the
    other items are drawn at random from all of them.
    """
    per_epoch = len(items) // batch_size
    step = start_step
    while True:
        epoch, index = divmod(step, per_epoch)
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        first = order[index * batch_size:(index + 1) * batch_size]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.cat([first[:, None], torch.randint(len(items), (len(first), max_items - 1), generator=gen)], 1)
        images, targets = render_scene(items[idx], labels[idx], gen, max_items, full_rotation, patch=patch,
                                       single_share=single_share)
        yield step, images, targets
        step += 1


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy (%) of `model` on [0, 1] images, by the engine's evaluation (`dytune.engine.evaluate`);
    the model's training mode is kept."""
    was_training = model.training
    batches = ((normalize(images[i:i + batch_size]), labels[i:i + batch_size]) for i in range(0, len(images), batch_size))
    metrics = evaluate_model(model, batches, DistEnv(), len(FASHION_MNIST_CLASSES), "fp32", progress=False)
    model.train(was_training)
    return metrics["acc"]


def test_set(count: int = 10000, seed: int = 12345) -> Tuple[torch.Tensor, torch.Tensor]:
    """The first `count` Fashion-MNIST test items rendered at difficulty 1 with a fixed seed (in chunks)."""
    items, labels = load_fashion_mnist("test")
    items, labels = torch.from_numpy(items[:count]), torch.from_numpy(labels[:count])
    gen = torch.Generator().manual_seed(seed)
    images = torch.cat([render_source(items[i:i + 1000], gen, 1.0) for i in range(0, len(items), 1000)])
    return images, labels


def is_multitask(options: Dict[str, Any]) -> bool:
    """Whether the multi-task options (MULTITASK_DEFAULTS keys) leave the single-item source task."""
    return any(options.get(k, v) != v for k, v in MULTITASK_DEFAULTS.items())


def load_last(run: Path) -> Optional[Dict[str, Any]]:
    """The training state of pretrain run folder `run`: its `last/` checkpoint, verified against its manifest (or
    `last.prev`, with a message, when `last/` is incomplete), else the `last.pt` of an older run folder; None when
    the run has no checkpoint yet."""
    run = Path(run)
    if has_checkpoint(run):
        return torch.load(read_checkpoint(run / "last") / STATE_FILE, map_location="cpu", weights_only=True)
    if (run / LEGACY_LAST).is_file():
        return torch.load(run / LEGACY_LAST, map_location="cpu", weights_only=True)
    return None


def load_init(path: str) -> Dict[str, Any]:
    """The weights `--init` names: another run's checkpoint (`RUN/last`, or `RUN/last.pt`, which also names the
    `last/` of a run written by this version), or an exported `mini_vit.safetensors` (as float32)."""
    source = Path(path)
    if source.name.endswith(".safetensors"):
        from safetensors.torch import load_file

        return {"model": {k: v.float() for k, v in load_file(str(source)).items()}}
    if source.is_dir():
        return torch.load(read_checkpoint(source) / STATE_FILE, map_location="cpu", weights_only=True)
    if source.is_file():
        return torch.load(source, map_location="cpu", weights_only=True)
    if source.name == LEGACY_LAST and has_checkpoint(source.parent):
        return load_last(source.parent)
    raise FileNotFoundError(f"--init {path}: not found; expected a pretrain run's checkpoint (RUN/last) or an "
                            f"exported mini_vit.safetensors")


def train(config: PretrainConfig) -> Dict[str, Any]:
    """Pre-train (or resume) in `config.out`, holding its run lock; returns the final summary also written to
    `summary.json`."""
    out = Path(config.out)
    with RunLock(out):
        clean_stale_temporaries(out)
        return _train(config, out)


def _train(cfg: PretrainConfig, out: Path) -> Dict[str, Any]:
    torch.set_num_threads(cfg.threads)
    config = {k: v for k, v in asdict(cfg).items() if k not in ("threads", "max_minutes")}
    # the multi-task options are written only when they differ from their defaults, so a single-item run's
    # config.json is the one it always was
    config = {k: v for k, v in config.items() if not (k in OPTIONAL_DEFAULTS and v == OPTIONAL_DEFAULTS[k])}
    options = {k: getattr(cfg, k) for k in MULTITASK_DEFAULTS}
    multitask = is_multitask(options)
    config_path = out / "config.json"
    if config_path.exists():
        old = json.loads(config_path.read_text())
        old.pop("debug", None)  # the command line's --debug flag, which older versions recorded; it changes nothing
        old = {k: v for k, v in old.items() if not (k in OPTIONAL_DEFAULTS and v == OPTIONAL_DEFAULTS[k])}
        diff = {k: (old.get(k), config.get(k)) for k in set(old) | set(config) if old.get(k) != config.get(k)}
        if diff:
            raise ValueError(f"{config_path}: the run folder holds a different configuration {diff}; "
                             f"use another --out or the same arguments")
    else:
        atomic_write(config_path, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2)))

    items, labels = (torch.from_numpy(a) for a in load_fashion_mnist("train"))
    test_images, test_labels = test_set(10000)
    per_epoch = len(items) // cfg.batch_size
    total = int(cfg.epochs * per_epoch)
    warmup = int(cfg.warmup_epochs * per_epoch)
    curriculum = max(int(cfg.curriculum_epochs * per_epoch), 1)
    hold = int(cfg.easy_epochs * per_epoch)

    def difficulty_at(step: int) -> float:
        return min(max(step - hold, 0) / curriculum, 1.0) if cfg.curriculum_epochs > 0 else 1.0

    torch.manual_seed(cfg.seed)
    model = build_backbone(cfg.embed_dim, cfg.depth, cfg.heads, cfg.patch_size, drop_path_rate=cfg.drop_path,
                           **pool_kwargs(cfg.pool))
    # created after the backbone, so the backbone's initial weights do not depend on the multi-task options
    aux = AuxHeads(cfg.embed_dim, options["max_items"]) if multitask else None
    if cfg.head_only:  # refit the 10-class head on frozen features (a last, cheap stage)
        if multitask:
            raise ValueError("--head-only trains the 10-class head alone; it takes the single-item source")
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("head."))
    trained = model if aux is None else nn.ModuleDict({"model": model, "aux": aux})
    optimizer = torch.optim.AdamW(param_groups(trained, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    step = 0
    last = out / "last"
    state = load_last(out)
    if cfg.init and state is None:
        init = load_init(cfg.init)
        model.load_state_dict(init["model"])
        if aux is not None and "aux" in init:
            aux.load_state_dict(init["aux"])
        print(f"starting from the weights of {cfg.init}", file=sys.stderr)
    if state is not None:
        model.load_state_dict(state["model"])
        if aux is not None:
            aux.load_state_dict(state["aux"])
        optimizer.load_state_dict(state["optimizer"])
        if "rng" in state:
            set_rng_state(state["rng"])
        else:  # an older run folder's last.pt
            torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        print(f"resuming {out} at step {step}/{total}", file=sys.stderr)

    model.train()
    deadline = time.time() + 60 * cfg.max_minutes if cfg.max_minutes else None
    started, seen, loss_sum, hits = time.time(), 0, 0.0, 0
    bar = tqdm(total=total, initial=step, desc="pretrain", unit="step", dynamic_ncols=True)
    if multitask:
        batches = scene_batches(items, labels, cfg.batch_size, cfg.seed, step, options["max_items"],
                                options["full_rotation"], cfg.patch_size, options["single_share"])
    else:
        batches = source_batches(items, labels, cfg.batch_size, cfg.seed, step, difficulty_at)
    schedule = LrSchedule(total, warmup, cfg.lr, cfg.min_lr)
    optimizer_step = OptimizerStep(optimizer, schedule, trained.parameters(), cfg.clip_grad)
    log = CsvLog(out / "log.csv", key="step")
    aux_sums: Dict[str, float] = {}
    while step < total:
        step, images, target = next(batches)

        def forward() -> Tuple[torch.Tensor, Dict[str, Any]]:
            if aux is None:
                logits = model(normalize(images))
                return F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing), {"logits": logits}
            loss, logits, parts = multitask_loss(model, aux, images, target, options["aux_weight"],
                                                 options["patch_weight"], cfg.label_smoothing)
            return loss, {"logits": logits, **parts}

        try:
            loss, parts = optimizer_step(step, forward)
        except FloatingPointError as e:
            raise FloatingPointError(f"{e} at step {step}; {last} holds the last good state") from e
        lr, logits = optimizer_step.lr, parts.pop("logits")
        if aux is not None:
            target = target["label"]
            for k, v in parts.items():
                aux_sums[k] = aux_sums.get(k, 0.0) + v * len(target)
        step += 1
        seen += len(target)
        loss_sum += loss.item() * len(target)
        hits += (logits.argmax(-1) == target).sum().item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", d=f"{difficulty_at(step - 1):.2f}", lr=f"{lr:.1e}")
        stop = deadline is not None and time.time() > deadline
        if step % cfg.ckpt_every == 0 or step == total or stop:
            elapsed = time.time() - started
            row = dict(step=step, epoch=f"{step / per_epoch:.3f}", difficulty=f"{difficulty_at(step - 1):.3f}",
                       lr=f"{lr:.3e}", train_loss=f"{loss_sum / seen:.4f}", train_acc=f"{100 * hits / seen:.2f}",
                       test_acc=f"{evaluate(model, test_images[:cfg.eval_size], test_labels[:cfg.eval_size]):.2f}",
                       img_per_s=f"{seen / elapsed:.1f}", elapsed_s=f"{elapsed:.0f}")
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(),
                     "step": step}
            if aux is not None:
                state["aux"] = aux.state_dict()
            write_checkpoint(out, "last", lambda folder: torch.save(state, folder / STATE_FILE), epoch=step)
            (out / LEGACY_LAST).unlink(missing_ok=True)  # an older run folder's checkpoint, now superseded
            log.append(row)
            line = " ".join(f"{k}={v}" for k, v in row.items())
            if aux_sums:  # training accuracy (%) of each auxiliary head since the last row, printed only
                line += " aux_acc " + " ".join(f"{k}={v / seen:.1f}" for k, v in aux_sums.items())
            bar.write(line)
            started, seen, loss_sum, hits, aux_sums = time.time(), 0, 0.0, 0, {}
        if stop:
            print(f"stopped at step {step}/{total} after --max-minutes {cfg.max_minutes}; rerun to resume",
                  file=sys.stderr)
            break
    bar.close()
    summary = {"step": step, "total": total, "finished": step >= total,
               "test_acc": evaluate(model, test_images, test_labels), "test_size": len(test_labels)}
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    return summary


def export(run: Path, dest: Path, fp16: bool = True) -> Path:
    """Write a run's backbone to `dest`: `mini_vit.safetensors`, `mini_vit.json`, `mini_vit_log.csv`.

    The JSON holds the timm model name and keyword arguments, the input normalisation, the source task and its
    held-out accuracy, so `dytune.pretrained.mini_vit()` can rebuild the model; the log holds the rows of every stage
    (runs chained by `--init`), tagged by run folder. Weights are stored as float16
    (`fp16`) to halve the file; they load back as float32.
    """
    from safetensors.torch import save_file

    config = json.loads((run / "config.json").read_text())
    summary_path = run / "summary.json"
    if not summary_path.exists():
        raise FileNotFoundError(f"{summary_path}: the run in {run} has no final test yet; run or resume it first")
    summary = json.loads(summary_path.read_text())
    checkpoint = load_last(run)
    if checkpoint is None:
        raise FileNotFoundError(f"{run}: no checkpoint (last/); run or resume it first")
    if checkpoint["step"] != summary["step"]:
        raise ValueError(f"{run}: its checkpoint is at step {checkpoint['step']} but summary.json tested step "
                         f"{summary['step']}; resume the run to refresh the summary")
    state = checkpoint["model"]
    dtype = torch.float16 if fp16 else torch.float32
    tensors = {k: v.to(dtype).contiguous() for k, v in state.items()}
    dest.mkdir(parents=True, exist_ok=True)
    kwargs = model_kwargs(config["embed_dim"], config["depth"], config["heads"], config["patch_size"],
                          len(FASHION_MNIST_CLASSES), **pool_kwargs(config["pool"]))
    meta = {
        "timm_model": TIMM_NAME, "timm_kwargs": kwargs, "mean": list(MEAN), "std": list(STD),
        "weights": "mini_vit.safetensors", "weights_dtype": str(dtype).replace("torch.", ""),
        "source_task": ("Fashion-MNIST item classification on 64x64 textured canvases (dytune.mini.pretrain.render_source)"
                        if not any(is_multitask(stage) for stage in _stage_configs(run)) else
                        "class of the largest of 1-%d Fashion-MNIST items on 64x64 textured canvases, with auxiliary "
                        "count, class-set, position, size, rotation and per-patch heads (dytune.mini.pretrain.render_scene); "
                        "test_acc: one item per canvas as in render_source" %
                        max(stage.get("max_items", 1) for stage in _stage_configs(run))),
        "classes": list(FASHION_MNIST_CLASSES),
        "test_acc": summary["test_acc"], "test_size": summary["test_size"], "steps": summary["step"],
        "finished": summary["finished"], "planned_steps": summary["total"],
        "training": _stage_configs(run), "timm_version": timm.__version__, "torch_version": torch.__version__,
    }
    atomic_write(dest / "mini_vit.safetensors", lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write(dest / "mini_vit.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    rows = _stage_logs(run)
    def write_log(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["run", *LOG_FIELDS])
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(dest / "mini_vit_log.csv", write_log)
    return dest


def _stage_configs(run: Path) -> List[Dict[str, Any]]:
    """The configurations of a run and of the runs it started from (`--init`), earliest first.

    An `--init` of an exported `mini_vit.safetensors` contributes the stages recorded in the `mini_vit.json` beside it.
    """
    config = json.loads((run / "config.json").read_text())
    init = config.get("init")
    if not init:
        return [config]
    if str(init).endswith(".safetensors"):
        return json.loads((Path(init).parent / "mini_vit.json").read_text())["training"] + [config]
    return _stage_configs(Path(init).parent) + [config]


def _stage_logs(run: Path) -> List[Dict[str, str]]:
    """The log rows of a run preceded by those of the runs it started from (`--init`), each tagged with its run."""
    config = json.loads((run / "config.json").read_text())
    init = config.get("init")
    earlier: List[Dict[str, str]] = []
    if init and str(init).endswith(".safetensors"):
        with open(Path(init).parent / "mini_vit_log.csv", newline="") as f:
            earlier = list(csv.DictReader(f))
    elif init:
        earlier = _stage_logs(Path(init).parent)
    with open(run / "log.csv", newline="") as f:
        return earlier + [{"run": run.name, **row} for row in csv.DictReader(f)]
