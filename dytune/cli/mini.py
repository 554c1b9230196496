"""`dytune minivtab`, `dytune minivideo`, `dytune miniseg` (the offline benchmarks' data) and `dytune pretrain` (the
mini backbone)."""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Iterable

from ..mini import miniseg, minivideo, minivtab, pretrain

_PRETRAIN = pretrain.PretrainConfig()  # the defaults of `dytune pretrain`'s flags


def _add_task_build_flags(p: argparse.ArgumentParser, tasks: Iterable[str], unit: str) -> None:
    """The flags of a benchmark built as one folder per task: output folder, seed, task subset, split sizes."""
    p.add_argument("--root", required=True, help="output folder; finished tasks in it are kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", nargs="+", choices=sorted(tasks), default=None, help="a subset of the tasks")
    for flag, default, split in (("--train", 800, "training"), ("--val", 200, "validation"), ("--test", 1000, "test")):
        p.add_argument(flag, type=int, default=default, help=f"{split} {unit} per task")


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    if name == "minivtab":
        p = sub.add_parser(name, help="build the offline mini-VTAB benchmark (7 tasks, VTAB-1K layout)",
                           description=minivtab.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_task_build_flags(p, minivtab.TASKS, "images")
        p.set_defaults(run=run_minivtab)
    elif name == "minivideo":
        p = sub.add_parser(name, help="build the offline mini-video benchmark (Kinetics and SSv2 layouts)",
                           description=minivideo.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_task_build_flags(p, minivideo.TASKS, "clips")
        p.add_argument("--frames", type=int, default=minivideo.FRAMES, help="frames per clip")
        p.set_defaults(run=run_minivideo)
    elif name == "miniseg":
        p = sub.add_parser(name, help="build the offline mini-segmentation benchmark (ADE20K layout)",
                           description=miniseg.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--root", required=True, help="data set folder to create; an existing one is kept")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--train", type=int, default=1000, help="training images")
        p.add_argument("--val", type=int, default=500, help="validation images")
        p.add_argument("--size", type=int, default=128, help="image side in pixels")
        p.set_defaults(run=run_miniseg)
    elif name == "pretrain":
        p = _pretrain_parser(sub, name)
    else:
        raise ValueError(f"dytune.cli.mini: no sub-command {name!r}; expected minivtab, minivideo, miniseg or pretrain")
    return p


def run_minivtab(args: argparse.Namespace) -> int:
    folders = minivtab.build_minivtab(args.root, args.seed, args.tasks, args.train, args.val, args.test)
    for task, folder in folders.items():
        meta = json.loads((folder / "meta.json").read_text())
        share = meta[f"background_share_patch{minivtab.PATCH}"]["test"]
        print(f"{task:12s} {meta['group']:12s} {meta['num_classes']:3d} classes  "
              f"background patches {100 * share:.0f}%  {folder}")
    return 0


def run_minivideo(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    folders = minivideo.build_minivideo(args.root, args.seed, args.tasks, args.train, args.val, args.test,
                                        args.frames)
    for task, folder in folders.items():
        meta = json.loads((folder / "meta.json").read_text())
        print(f"{task:14s} {meta['layout']:9s} {meta['codec']:5s} {meta['num_classes']:3d} classes  {folder}")
    print(f"done in {time.perf_counter() - began:.0f} s")
    return 0


def run_miniseg(args: argparse.Namespace) -> int:
    root = miniseg.build_miniseg(args.root, args.seed, args.train, args.val, args.size)
    meta = json.loads((root / "meta.json").read_text())
    print(f"mini-segmentation: {meta['num_classes']} classes, {meta['counts']['training']} + "
          f"{meta['counts']['validation']} images of {meta['image_size']}px, built in {meta['seconds']} s: {root}")
    return 0


def _pretrain_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    d = _PRETRAIN
    p = sub.add_parser(name, help="pre-train the mini ViT backbone on Fashion-MNIST items on canvases",
                       description=pretrain.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=d.out, help="run folder (resumed if it exists)")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="when finished, write the backbone files there (e.g. dytune/assets)")
    p.add_argument("--init", default=d.init, metavar="CHECKPOINT",
                   help="start from the model weights of another run's checkpoint, RUN/last (or an older run's "
                        "RUN/last.pt), or of an exported mini_vit.safetensors (a further stage of training)")
    p.add_argument("--embed-dim", type=int, default=d.embed_dim)
    p.add_argument("--depth", type=int, default=d.depth)
    p.add_argument("--heads", type=int, default=d.heads)
    p.add_argument("--patch-size", type=int, default=d.patch_size)
    p.add_argument("--pool", choices=("token", "avg"), default=d.pool,
                   help="classify from the class token or from the mean of the patch tokens")
    p.add_argument("--epochs", type=float, default=d.epochs, help="passes over the 60,000 training items")
    p.add_argument("--easy-epochs", type=float, default=d.easy_epochs, help="epochs at difficulty 0 before the ramp")
    p.add_argument("--curriculum-epochs", type=float, default=d.curriculum_epochs,
                   help="epochs over which difficulty then rises linearly from 0 to 1 (0: full difficulty at once)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--min-lr", type=float, default=d.min_lr)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--drop-path", type=float, default=d.drop_path)
    p.add_argument("--clip-grad", type=float, default=d.clip_grad)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--eval-size", type=int, default=d.eval_size,
                   help="held-out test images evaluated at each log row (the final test uses all 10,000)")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="steps between checkpoint, log row and test")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch CPU threads (on 2 shared cores, 1 thread ran 3-5x faster than 2: docs/mini_backbone.md)")
    p.add_argument("--max-minutes", type=float, default=d.max_minutes,
                   help="stop (resumably) after this wall time")
    p.add_argument("--head-only", action="store_true",
                   help="train only the 10-class head, the backbone frozen (e.g. refit the head of an --init)")
    g = p.add_argument_group("multi-task source (the defaults give the single-item task)")
    g.add_argument("--max-items", type=int, default=d.max_items,
                   help="items per canvas, uniform in 1..N; the 10-class head names the largest (render_scene)")
    g.add_argument("--single-share", type=float, default=d.single_share,
                   help="share of the scenes that hold a single item whatever --max-items says")
    g.add_argument("--full-rotation", type=float, default=d.full_rotation,
                   help="share of the items rotated anywhere in 360 degrees (the others +-20)")
    g.add_argument("--aux-weight", type=float, default=d.aux_weight,
                   help="weight of each auxiliary loss on the pooled features: count, classes present, x, y, size, "
                        "rotation of the largest item, 4x4 occupancy")
    g.add_argument("--patch-weight", type=float, default=d.patch_weight,
                   help="weight of the per-patch-token loss: class of the item covering the patch, or background")
    p.set_defaults(run=run_pretrain)
    return p


def pretrain_config(args: argparse.Namespace) -> pretrain.PretrainConfig:
    """The run that `dytune pretrain`'s parsed flags describe."""
    return pretrain.PretrainConfig(**{f.name: getattr(args, f.name) for f in fields(pretrain.PretrainConfig)})


def run_pretrain(args: argparse.Namespace) -> int:
    summary = pretrain.train(pretrain_config(args))
    print(json.dumps(summary))
    if args.export:
        print(f"wrote {pretrain.export(Path(args.out), Path(args.export))}")
    return 0
