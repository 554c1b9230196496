"""`dytune demo`: DyT end to end with the shipped mini backbone, in a few minutes on a laptop CPU.

Builds (or reuses) a small offline data set, trains DyT (adapters + dispatchers + the task's head) on it, and
reports the test metric, the keep rate per layer, MACs and measured speed against the dense backbone with the same
head, plus a picture of which patches skipped the MLP in which layer:

* `--task image` (default): one mini-VTAB task (`--subset`, digits by default), skip maps over test images;
* `--task video`: one mini-video task (shapes_motion by default), skip maps over the frames of a test clip;
* `--task seg`: mini-segmentation, test images next to their ground truth, predicted masks and skip maps.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from ..bench.timing import time_interleaved
from . import minivideo, minivtab
from ..utils.distributed import teardown
from ..run_config import TrainConfig
from ..engine.runs import load_run
from ..engine.trainer import STATE, train
from ..core.flops import count_macs
from ..pretrained import mini_vit_info
from ..utils.runtime import timing_warning


@dataclass(frozen=True)
class DemoKind:
    """One kind of demo: its data, the run's settings and how it describes itself.

    Args:
        subsets: The data set's tasks a demo may pick, the default first (empty: the data set has one).
        default_root: Where the data set is built.
        epochs: Training epochs by default.
        build: (args) -> the folder the run reads (builds the data set there unless it exists; sample counts the
            builder's own unless given, so that the demo shares the benchmark's data).
        settings: (args, data folder) -> the run's TrainConfig settings beyond the shared ones.
        describe: (args) -> one line on what is learned.
    """

    subsets: Tuple[str, ...]
    default_root: str
    epochs: int
    build: Callable[[argparse.Namespace], Path]
    settings: Callable[[argparse.Namespace, Path], Dict[str, Any]]
    describe: Callable[[argparse.Namespace], str]


def _counts(args: argparse.Namespace, train: str = "n_train", val: Optional[str] = "n_val",
            test: str = "n_test") -> Dict[str, int]:
    """The builder's sample-count arguments that the command line sets (validation: a quarter of training)."""
    counts = {}
    if args.train_images is not None:
        counts[train] = args.train_images
        if val:
            counts[val] = args.train_images // 4
    if args.test_images is not None:
        counts[test] = args.test_images
    return counts


def _image_build(args: argparse.Namespace) -> Path:
    minivtab.build_minivtab(args.data_root, tasks=[args.subset], **_counts(args))
    return Path(args.data_root)


def _image_settings(args: argparse.Namespace, root: Path) -> Dict[str, Any]:
    return dict(dataset="vtab", data_root=str(root), task=args.subset, cache_images=True, batch_size=64,
                lr=args.lr or 1e-2, warmup_epochs=min(2.0, args.epochs / 5), min_lr=1e-5)


def _image_describe(args: argparse.Namespace) -> str:
    task = minivtab.TASKS[args.subset]
    return f"mini-VTAB '{args.subset}' ({len(task.classes)} classes: {task.description})"


def _video_build(args: argparse.Namespace) -> Path:
    return minivideo.build_minivideo(args.data_root, tasks=[args.subset], **_counts(args))[args.subset]


# mini-video layout -> (the dataset= that reads it, its training split from the clip counts): K400 list files name
# their clip count (train800.txt), the SSv2 layout has one training JSON
VIDEO_LAYOUTS: Dict[str, Tuple[str, Callable[[Dict[str, int]], str]]] = {
    "kinetics": ("k400", lambda counts: f"train{counts['train']}"),
    "ssv2": ("ssv2", lambda counts: "train"),
}


def _video_settings(args: argparse.Namespace, root: Path) -> Dict[str, Any]:
    meta = json.loads((root / "meta.json").read_text())
    dataset, train_split = VIDEO_LAYOUTS[meta["layout"]]
    # the mini-video suite's recipe (configs/minivideo_suite.yaml): 4 frames at stride 4, 3 test views
    return dict(dataset=dataset, data_root=str(root), train_split=train_split(meta["counts"]), eval_split="test",
                num_frames=4, frame_stride=4, test_views=3, cache_images=True, batch_size=32, lr=args.lr or 1e-2,
                warmup_epochs=1.0, min_lr=1e-5)


def _video_describe(args: argparse.Namespace) -> str:
    task = minivideo.TASKS[args.subset]
    return f"mini-video '{args.subset}' ({len(task.classes)} classes: {task.description})"


def _seg_build(args: argparse.Namespace) -> Path:
    from .miniseg import build_miniseg

    return build_miniseg(args.data_root, **_counts(args, val=None, test="n_val"))


def _seg_settings(args: argparse.Namespace, root: Path) -> Dict[str, Any]:
    # the mini-segmentation suite's recipe (configs/miniseg_suite.yaml), without distillation as the paper's
    return dict(dataset="ade20k", data_root=str(root), train_split="training", eval_split="validation",
                seg_scale=[512, 128], seg_inference="whole", seg_channels=128, batch_size=16, lr=args.lr or 1e-2,
                lr_schedule="poly", warmup_epochs=0.5, min_lr=0.0, distill=False)


def _seg_describe(args: argparse.Namespace) -> str:
    from .miniseg import CLASSES

    return f"mini-segmentation ({len(CLASSES)} classes: shapes, letters and digits on textured backgrounds)"


DEMOS: Dict[str, DemoKind] = {
    "image": DemoKind(("digits", *sorted(set(minivtab.TASKS) - {"digits"})), "data/minivtab", 10, _image_build,
                      _image_settings, _image_describe),
    "video": DemoKind(tuple(minivideo.TASKS), "data/minivideo", 5, _video_build, _video_settings, _video_describe),
    "seg": DemoKind((), "data/miniseg", 8, _seg_build, _seg_settings, _seg_describe),
}


def demo_config(args: argparse.Namespace, root: Path) -> TrainConfig:
    """The run of the demo: DyT on the mini backbone with the kind's recipe."""
    info = mini_vit_info()
    shared = dict(img_size=info["timm_kwargs"].get("img_size", 64), mean=info["mean"], std=info["std"],
                  num_workers=0, model="dytune_mini_vit", pretrained=True, method="dyt", bottleneck=8,
                  adapter_scale=1.0, target_rate=args.target_rate, epochs=args.epochs, weight_decay=1e-4,
                  seed=args.seed, output_dir=str(args.out / (args.subset or args.task)), eval_every=args.epochs)
    return TrainConfig.from_dict({**shared, **DEMOS[args.task].settings(args, root)}, source="dytune demo")


def speed(model: torch.nn.Module, dense: torch.nn.Module, inputs: torch.Tensor, infer: Callable,
          repeats: int) -> Dict[str, Any]:
    """Interleaved timings of the dense model and DyT on the same batch (medians of `repeats`)."""
    fns = {"dense": lambda x: infer(dense, x), "dyt": lambda x: infer(model, x)}
    timings = time_interleaved(fns, inputs, warmup=1, repeats=repeats)
    dyt, dense_timing = timings["dyt"], timings["dense"]
    return {"batch": inputs.shape[0], "dense_per_s": dense_timing.images_per_s, "dyt_per_s": dyt.images_per_s,
            "speedup": dyt.speedup_over(dense_timing), "spread": dyt.speedup_spread(dense_timing),
            "rounds": repeats, "threads": torch.get_num_threads()}


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    kind = DEMOS[args.task]
    if kind.subsets and args.subset is None:
        args.subset = kind.subsets[0]
    elif args.subset is not None and args.subset not in kind.subsets:
        raise ValueError(f"dytune demo --task {args.task}: --subset {args.subset!r} is not one of "
                         f"{', '.join(kind.subsets) or 'nothing (this data set has no subsets)'}")
    args.data_root = Path(args.data_root or kind.default_root)
    args.epochs = args.epochs or kind.epochs
    cfg = demo_config(args, kind.build(args))
    out = Path(cfg.output_dir)
    if (out / "results.json").is_file():
        print(f"reusing the finished run in {out} (delete it to train again)")
        results = json.loads((out / "results.json").read_text())
    else:
        results = train(cfg, resume=(out / "last" / STATE).is_file())
    try:
        loaded = load_run(out, checkpoint="last")
    finally:
        teardown()
    model, task = loaded.model.eval(), loaded.task
    dense = task.add_head(task.create_backbone(loaded.num_classes, pretrained=True), loaded.num_classes).eval()
    batch = min(args.speed_batch, len(loaded.loader.dataset))
    samples = [loaded.loader.dataset[i] for i in range(batch)]
    inputs = torch.stack([s[0] for s in samples])
    targets = torch.stack([torch.as_tensor(s[1]) for s in samples])
    with torch.no_grad():
        dense_macs = count_macs(dense, inputs, forward=task.infer).double().mean().item()
        dyt_macs = count_macs(model, inputs, forward=task.infer).double().mean().item()
    timing = speed(model, dense, inputs, task.infer, args.repeats)
    picture = task.save_examples(model, inputs, targets, out / "skip_map.png", loaded.classes)
    final, metric, unit = results["final"], results["metric"], task.sample_unit
    print(f"\nDyT on {kind.describe(args)} with the mini backbone ({mini_vit_info()['source_task'].split(' (')[0]}):")
    print(f"  test {metric:<18} {final[metric]:.2f} % on {final['images']} {unit}s")
    print("  keep rate per layer    " + " ".join(f"{r:.2f}" for r in final["keep_rates"])
          + f"   (mean {final['keep_rate']:.2f}, target {cfg.target_rate})")
    print(f"  MACs per {unit:<13} DyT {dyt_macs / 1e6:.1f} M vs dense backbone {dense_macs / 1e6:.1f} M "
          f"({100 * dyt_macs / dense_macs:.0f} %), the same head on both")
    print(f"  measured speed         DyT {timing['dyt_per_s']:.0f} {unit}/s vs dense {timing['dense_per_s']:.0f} "
          f"{unit}/s (x{timing['speedup']:.2f} ±{100 * timing['spread']:.0f} % over {timing['rounds']} rounds, "
          f"batch {timing['batch']}, {timing['threads']} threads)")
    warning = timing_warning("the measured speed-up", timing["spread"])
    if warning:
        print("  " + warning)
    print(f"  trainable parameters   {results['trainable_params']:,}")
    print(f"  skip map               {picture}")
    return 0


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="train DyT on a small offline task and show what it skips", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="image", choices=sorted(DEMOS), help="image classification, video or seg")
    p.add_argument("--subset", default=None,
                   help="the data set's task: " + "; ".join(f"{k}: {', '.join(v.subsets)} (default {v.subsets[0]})"
                                                            for k, v in DEMOS.items() if v.subsets))
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default " + ", ".join(f"{k}: {v.epochs}" for k, v in DEMOS.items()) + ")")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 1e-2, the suites' choice on the AdaptFormer baseline)")
    p.add_argument("--target-rate", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, default=None,
                   help="data set folder (default " + ", ".join(f"{k}: {v.default_root}" for k, v in DEMOS.items())
                        + ")")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--train-images", type=int, default=None,
                   help="training samples, plus a quarter for validation where the data set has one (default: the "
                        "benchmark's, 800 images or clips, 1,000 for segmentation)")
    p.add_argument("--test-images", type=int, default=None,
                   help="test samples (default: the benchmark's, 1,000, 500 for segmentation)")
    p.add_argument("--speed-batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds of the speed measurement")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(run=run)
