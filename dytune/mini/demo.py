"""`dytune demo`: DyT end to end with the shipped mini backbone, in a few minutes on a laptop CPU.

Builds (or reuses) a small offline data set, trains DyT (adapters + dispatchers + the task's head) on it, and
reports the test metric, the keep rate per layer, MACs and measured speed against the dense backbone with the same
head, plus a picture of which patches skipped the MLP in which layer:

* `--task image` (default): one mini-VTAB task (`--subset`, digits by default), skip maps over test images;
* `--task video`: one mini-video task (shapes_motion by default), skip maps over the frames of a test clip;
* `--task seg`: mini-segmentation, test images next to their ground truth, predicted masks and skip maps.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from ..bench.timing import time_interleaved
from . import minivideo, minivtab
from ..utils.distributed import teardown
from ..run_config import TrainConfig
from ..engine.runs import load_run
from ..engine.suite_file import load_suite
from ..engine.trainer import STATE, train
from ..core.measure import InferenceMeter
from ..pretrained import mini_vit_info
from ..utils.runtime import timing_warning


# the mini suites, whose recipes the demo takes: configs/ of the checkout this package is loaded from (an editable
# install, `pip install -e .`, as the README's); a plain `pip install .` does not ship configs/
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class DemoOptions:
    """What `dytune demo` runs (its flags; None: the kind's default).

    Args:
        task: The kind of demo, a key of DEMOS.
        subset: The data set's task (default: the kind's first).
        epochs: Training epochs (default: the kind's).
        lr: Learning rate (default 1e-2, the suites' choice on the AdaptFormer baseline).
        target_rate: DyT's target keep rate.
        seed: The run's seed.
        data_root: The data set folder (default: the kind's).
        out: The runs go to `out/<subset or task>`.
        train_images, test_images: Sample counts of the data set (default: the benchmark's own).
        speed_batch, repeats: Batch and timed rounds of the speed measurement.
        threads: Torch CPU threads (default: torch's choice).
    """

    task: str = "image"
    subset: Optional[str] = None
    epochs: Optional[int] = None
    lr: Optional[float] = None
    target_rate: float = 0.5
    seed: int = 0
    data_root: Optional[Path] = None
    out: Path = Path("runs/demo")
    train_images: Optional[int] = None
    test_images: Optional[int] = None
    speed_batch: int = 64
    repeats: int = 5
    threads: Optional[int] = None


@dataclass(frozen=True)
class DemoKind:
    """One kind of demo: its data, the suite whose recipe it follows, what it changes and how it describes itself.

    Args:
        subsets: The data set's tasks a demo may pick, the default first (empty: the data set has one).
        default_root: Where the data set is built.
        epochs: Training epochs by default.
        suite: The mini suite (configs/<suite>_suite.yaml) whose `base` and `task_settings` are the run's settings.
        build: (options) -> the folder the run reads (builds the data set there unless it exists; sample counts the
            builder's own unless given, so that the demo shares the benchmark's data).
        differences: (options, data folder) -> the settings in which the demo departs from its suite's recipe.
        describe: (options) -> one line on what is learned.
    """

    subsets: Tuple[str, ...]
    default_root: str
    epochs: int
    suite: str
    build: Callable[[DemoOptions], Path]
    differences: Callable[[DemoOptions, Path], Dict[str, Any]]
    describe: Callable[[DemoOptions], str]


def _counts(options: DemoOptions, train: str = "n_train", val: Optional[str] = "n_val",
            test: str = "n_test") -> Dict[str, int]:
    """The builder's sample-count arguments that the options set (validation: a quarter of training)."""
    counts = {}
    if options.train_images is not None:
        counts[train] = options.train_images
        if val:
            counts[val] = options.train_images // 4
    if options.test_images is not None:
        counts[test] = options.test_images
    return counts


def _image_build(options: DemoOptions) -> Path:
    minivtab.build_minivtab(options.data_root, tasks=[options.subset], **_counts(options))
    return Path(options.data_root)


def _image_differences(options: DemoOptions, root: Path) -> Dict[str, Any]:
    # a short run: warm-up a fifth of the epochs, at most 2 (the suite's grid: a tenth)
    return dict(warmup_epochs=min(2.0, options.epochs / 5))


def _image_describe(options: DemoOptions) -> str:
    task = minivtab.TASKS[options.subset]
    return f"mini-VTAB '{options.subset}' ({len(task.classes)} classes: {task.description})"


def _video_build(options: DemoOptions) -> Path:
    return minivideo.build_minivideo(options.data_root, tasks=[options.subset], **_counts(options))[options.subset]


# mini-video layout -> its training split from the clip counts: K400 list files name their clip count
# (train800.txt), the SSv2 layout has one training JSON
VIDEO_TRAIN_SPLITS: Dict[str, Callable[[Dict[str, int]], str]] = {
    "kinetics": lambda counts: f"train{counts['train']}",
    "ssv2": lambda counts: "train",
}


def _video_differences(options: DemoOptions, root: Path) -> Dict[str, Any]:
    meta = json.loads((root / "meta.json").read_text())
    # trains on the training clips alone (the suite: training + validation), warm-up 1 epoch
    return dict(train_split=VIDEO_TRAIN_SPLITS[meta["layout"]](meta["counts"]), warmup_epochs=1.0)


def _video_describe(options: DemoOptions) -> str:
    task = minivideo.TASKS[options.subset]
    return f"mini-video '{options.subset}' ({len(task.classes)} classes: {task.description})"


def _seg_build(options: DemoOptions) -> Path:
    from .miniseg import build_miniseg

    return build_miniseg(options.data_root, **_counts(options, val=None, test="n_val"))


def _seg_differences(options: DemoOptions, root: Path) -> Dict[str, Any]:
    return dict(warmup_epochs=0.5)


def _seg_describe(options: DemoOptions) -> str:
    from .miniseg import CLASSES

    return f"mini-segmentation ({len(CLASSES)} classes: shapes, letters and digits on textured backgrounds)"


DEMOS: Dict[str, DemoKind] = {
    "image": DemoKind(("digits", *sorted(set(minivtab.TASKS) - {"digits"})), "data/minivtab", 10, "minivtab",
                      _image_build, _image_differences, _image_describe),
    "video": DemoKind(tuple(minivideo.TASKS), "data/minivideo", 5, "minivideo", _video_build, _video_differences,
                      _video_describe),
    "seg": DemoKind((), "data/miniseg", 8, "miniseg", _seg_build, _seg_differences, _seg_describe),
}


def resolve(options: DemoOptions) -> DemoOptions:
    """The options with the kind's defaults filled in (subset, data folder, epochs); a subset of another data set is
    refused."""
    kind = DEMOS[options.task]
    subset = options.subset
    if kind.subsets and subset is None:
        subset = kind.subsets[0]
    elif subset is not None and subset not in kind.subsets:
        raise ValueError(f"dytune demo --task {options.task}: --subset {subset!r} is not one of "
                         f"{', '.join(kind.subsets) or 'nothing (this data set has no subsets)'}")
    return replace(options, subset=subset, data_root=Path(options.data_root or kind.default_root),
                   epochs=options.epochs or kind.epochs)


def suite_recipe(name: str, task: Optional[str] = None) -> Dict[str, Any]:
    """The settings a run of `task` in mini suite `name` starts from: its `base`, then its `task_settings` of `task`
    (None: the base alone)."""
    path = CONFIGS / f"{name}_suite.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; `dytune demo` takes its recipe from the mini suites in configs/ "
                                f"of the dytune checkout (installed with `pip install -e .`)")
    suite = load_suite(path)
    return {**suite["base"], **(suite.get("task_settings") or {}).get(task, {})}


def demo_config(options: DemoOptions, root: Path) -> TrainConfig:
    """The run of the demo: DyT on the mini backbone with its suite's recipe, the kind's differences and the options.

    Args:
        options: Resolved options (`resolve`).
        root: The data folder the kind's `build` returned.
    """
    kind = DEMOS[options.task]
    run = dict(data_root=str(root), method="dyt", target_rate=options.target_rate, epochs=options.epochs,
               lr=options.lr or 1e-2, seed=options.seed, output_dir=str(options.out / (options.subset or options.task)),
               eval_every=options.epochs, **({"task": options.subset} if options.task == "image" else {}))
    settings = {**suite_recipe(kind.suite, options.subset), **kind.differences(options, root), **run}
    return TrainConfig.from_dict(settings, source="dytune demo")


def speed(model: torch.nn.Module, dense: torch.nn.Module, inputs: torch.Tensor, infer: Callable,
          repeats: int) -> Dict[str, Any]:
    """Interleaved timings of the dense model and DyT on the same batch (medians of `repeats`)."""
    fns = {"dense": lambda x: infer(dense, x), "dyt": lambda x: infer(model, x)}
    timings = time_interleaved(fns, inputs, warmup=1, repeats=repeats)
    dyt, dense_timing = timings["dyt"], timings["dense"]
    return {"batch": inputs.shape[0], "dense_per_s": dense_timing.images_per_s, "dyt_per_s": dyt.images_per_s,
            "speedup": dyt.speedup_over(dense_timing), "spread": dyt.speedup_spread(dense_timing),
            "rounds": repeats, "threads": torch.get_num_threads()}


def run_demo(options: DemoOptions) -> int:
    """Train (or reuse) the demo's run and print its metric, keep rates, MACs, measured speed and skip map; returns
    the exit code."""
    if options.threads:
        torch.set_num_threads(options.threads)
    options = resolve(options)
    kind = DEMOS[options.task]
    cfg = demo_config(options, kind.build(options))
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
    batch = min(options.speed_batch, len(loaded.loader.dataset))
    samples = [loaded.loader.dataset[i] for i in range(batch)]
    inputs = torch.stack([s[0] for s in samples])
    targets = torch.stack([torch.as_tensor(s[1]) for s in samples])
    with torch.no_grad():
        dense_macs, dyt_macs = (InferenceMeter(m, task.infer)(inputs)[1].double().mean().item()
                                for m in (dense, model))
    timing = speed(model, dense, inputs, task.infer, options.repeats)
    picture = task.save_examples(model, inputs, targets, out / "skip_map.png", loaded.classes)
    final, metric, unit = results["final"], results["metric"], task.sample_unit
    print(f"\nDyT on {kind.describe(options)} with the mini backbone ({mini_vit_info()['source_task'].split(' (')[0]}):")
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
