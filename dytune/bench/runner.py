"""The models `dytune bench` times, built on one backbone, and the interleaved timing of all of them."""
from __future__ import annotations

import copy
import dataclasses
import platform
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import timm
import torch
from torch import nn

from ..version import __version__
from ..backbones import backbone_for
from ..core.calibrate import calibrate
from ..core.capacity import plan_capacity, set_capacity
from ..core.checkpoint import from_pretrained, load_backbone_weights, read_pretrained_config
from ..core.config import VARIANTS, DyTConfig, dyt_setting
from ..core.convert import converted_config, execution, inner_vit, logits_only
from ..core.measure import InferenceMeter
from ..run_config import TrainConfig
from ..tasks import TASKS, Task
from ..utils.runtime import autocast, check_precision
from ..utils.settings import AT_LEAST_0, AT_LEAST_1, Bounds, Settings, setting
from ..core.tome import apply_tome, supports_proportional_attention
from ..methods import METHODS as REGISTRY
from .memory import peak_memory_bytes
from .runtimes import EAGER, runtime_compiler
from .timing import time_interleaved

@dataclass(frozen=True)
class BenchMethod:
    """A `--methods` entry of `dytune bench`.

    Args:
        registry: The `dytune.methods` method its adapted model is built with (None: a model no method trains,
            e.g. the dense backbone or ToMe, which merges tokens of a frozen model).
        what: What its rows time.
    """

    registry: Optional[str]
    what: str

    def __post_init__(self) -> None:
        if self.registry is not None and self.registry not in REGISTRY:
            raise ValueError(f"bench entry builds with method {self.registry!r}, which is not registered; "
                             f"registered: {', '.join(REGISTRY)}")


# The one table of bench's entries; every adapted model comes from the method registry.
BENCH_METHODS: Dict[str, BenchMethod] = {
    "dense": BenchMethod(None, "the backbone with the task's head"),
    "adaptformer": BenchMethod("adaptformer", "adapters beside every MLP, no dispatcher (DyT's complete model)"),
    "dyt": BenchMethod("dyt", "DyT per dispatch variant (or the checkpoint's), sparse execution"),
    "dyt+logits": BenchMethod("dyt", "DyT with the last block computing the class token alone"),
    "tome": BenchMethod(None, "ToMe token merging on the backbone"),
    "dyt+tome": BenchMethod("dyt", "DyT with ToMe merging"),
    "official": BenchMethod("dyt", "the official repository's fast-inference model, mirroring DyT's mlp variant"),
}
METHODS: Tuple[str, ...] = tuple(BENCH_METHODS)


@dataclass
class BenchSettings(Settings):
    """What `dytune bench` builds. Random weights unless `checkpoint` (a `save_pretrained` directory) is given.

    Values are parsed and checked as every `dytune.utils.settings.Settings` (on construction and on assignment);
    `BenchSettings.help()` lists them. The adapter width is DyTConfig's setting (`dyt_setting`).
    """

    model: str = setting("timm model name of the backbone", "vit_base_patch16_224")
    timm_kwargs: Dict[str, Any] = setting("Overrides for timm.create_model (img_size, depth, ...)", {})
    num_classes: int = setting("Classes of the head (random-weight models)", 100, AT_LEAST_1)
    checkpoint: Optional[str] = setting("A dytune checkpoint directory; its DyT model replaces the random-weight DyT "
                                        "variants", None)
    backbone_weights: Optional[str] = setting("Local backbone weight file (timm/.pth/.safetensors/.npz)", None)
    methods: Tuple[str, ...] = setting("Entries to build (BENCH_METHODS)",
                                       ("dense", "adaptformer", "dyt", "dyt+logits", "tome", "dyt+tome"),
                                       choices=METHODS)
    variants: Tuple[str, ...] = setting("DyT dispatch variants to build (random-weight models)", ("mlp",),
                                        choices=VARIANTS)
    keep_rate: Optional[float] = setting("Calibrate the dispatchers to this keep rate (None: keep a checkpoint's "
                                         "trained thresholds)", 0.5, Bounds(0, 1))
    bottleneck: int = dyt_setting("bottleneck")
    tome_r: int = setting("Tokens merged per block for ToMe and DyT + ToMe", 8, AT_LEAST_0)
    proportional_attention: bool = setting("ToMe's proportional attention (MLP dispatch and plain blocks only)",
                                           True)
    calibration_images: int = setting("Size of the random calibration batch", 32, AT_LEAST_1)
    official_repo: Optional[str] = setting("Root of a clone of the official repository, for the side-by-side model",
                                           None)
    seed: int = setting("Seed of weights and images", 0)
    task: str = setting("The task (a `dytune.tasks` registry name) whose model is timed: its head on every backbone, "
                        "its sample (an image, a clip, a segmentation image) and its inference step", "classification",
                        choices=lambda: sorted(TASKS))
    task_settings: Dict[str, Any] = setting("`TrainConfig` settings of the task (e.g. num_frames=8, img_size=512, "
                                            "seg_channels=768); one test view per clip unless test_views is given",
                                            {})


@dataclass
class BenchModel:
    """One timed model and what is known about it."""

    name: str
    model: nn.Module
    reference: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # logits of the reference path
    dynamic: bool = False
    macs_model: Optional[nn.Module] = None  # counted instead of `model` (whose layers count_macs does not know)
    variant: Optional[str] = None  # the DyT dispatch variant of the model's dynamic blocks (None: not a DyT model)
    run: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # timed instead of the task's step (an export)
    execution: Optional[str] = None  # the execution mode `model` is counted and compared in (None: its own)


def images_for(model: nn.Module, batch: int, seed: int, device: torch.device) -> torch.Tensor:
    """A reproducible random batch of the size the model takes."""
    backbone = backbone_for(model)
    height, width = backbone.image_size
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, backbone.in_chans, height, width, generator=gen).to(device)


def bench_task(settings: BenchSettings) -> Task:
    """The task of the benchmark, configured by `task_settings` on top of the backbone's own input size."""
    cls = TASKS[settings.task]
    size = settings.timm_kwargs.get("img_size") or timm.models.get_pretrained_cfg_value(settings.model, "input_size")
    if isinstance(size, (tuple, list)):  # timm's (C, H, W) input size, or an (H, W) img_size
        size = size[-1]
    values: Dict[str, Any] = {
        "dataset": cls.datasets[0], "model": settings.model, "model_kwargs": dict(settings.timm_kwargs),
        "pretrained": False, "test_views": 1, "img_size": size or 224,
    }
    values.update(settings.task_settings)
    return cls(TrainConfig.from_dict(values, source="dytune bench task settings"))


def inputs_for(task: Task, batch: int, seed: int, device: torch.device) -> torch.Tensor:
    """A reproducible random batch of `batch` samples shaped as the task's example input."""
    shape = task.example_input().shape[1:]
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=gen).to(device)


def _masked(model: nn.Module, task: Task) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(inputs: torch.Tensor) -> torch.Tensor:
        with execution(model, "masked"):
            return task.infer(model, inputs)
    return run


def _backbone(settings: BenchSettings, task: Task) -> nn.Module:
    torch.manual_seed(settings.seed)
    base = task.create_backbone(settings.num_classes, pretrained=False)
    if settings.backbone_weights:
        load_backbone_weights(base, settings.backbone_weights)
    return base.eval()


def adapted(entry: str, backbone: nn.Module, **values: Any) -> nn.Module:
    """`backbone` changed in place by the registry method that builds bench entry `entry`, with that method's
    settings class built from `values` (the others keep their defaults)."""
    method = REGISTRY[BENCH_METHODS[entry].registry]
    return method.apply(backbone, method.settings(**values))


def _calibrated(model: nn.Module, images: torch.Tensor, keep_rate: Optional[float], per_layer: bool) -> nn.Module:
    """Set the keep rate: per layer for untrained dispatchers (every layer at the rate, the FLOPs-ideal setting
    the speed tables measure), by one shared shift for a trained model (keeps its per-layer choice)."""
    if keep_rate is not None:
        calibrate(model, images, keep_rate, per_layer=per_layer)
    return model.eval()


def build_models(settings: BenchSettings, device: torch.device) -> Dict[str, BenchModel]:
    """Dense backbone, AdaptFormer, DyT (per variant or from a checkpoint), ToMe, DyT + ToMe and the official model,
    all sharing the backbone weights and the task's head, on `device` in eval mode.

    Methods the task's head rules out are skipped with a warning: ToMe where the head needs every token of the
    grid (segmentation), the logits-only last block where the head reads more than the class token (video); so are
    the dispatch variants and ToMe that the backbone family refuses (Swin: attention dispatch; Eva, Swin: ToMe).
    """
    task = bench_task(settings)
    base = _backbone(settings, task)
    calib = inputs_for(task, settings.calibration_images, settings.seed + 1, torch.device("cpu"))
    methods = list(settings.methods)
    for method, allowed, why in (("tome", task.mergeable_tokens, "needs every token of the grid"),
                                 ("dyt+tome", task.mergeable_tokens, "needs every token of the grid"),
                                 ("dyt+logits", task.class_token_head, "reads more than the class token")):
        if method in methods and not allowed:
            warnings.warn(f"dytune bench: no {method} rows for the {settings.task} task: its head {why}",
                          stacklevel=2)
            methods.remove(method)
    num_classes = settings.num_classes
    if settings.checkpoint:
        num_classes = read_pretrained_config(settings.checkpoint)["num_classes"] or num_classes
        if task.backbone_classes(num_classes):  # the backbone's own classifier is the head: the saved class count
            base.reset_classifier(num_classes)

    def wrap(backbone: nn.Module) -> nn.Module:
        """The task's model around `backbone`, the same head weights for every model."""
        torch.manual_seed(settings.seed + 3)
        return task.add_head(backbone, num_classes).eval()

    # dispatch variant -> the DyT backbone (its task model is calibrated after wrapping, each time it is wrapped)
    dyts: Dict[str, nn.Module] = {}
    if settings.checkpoint:
        trained = from_pretrained(settings.checkpoint, base=wrap(copy.deepcopy(base)))
        config = converted_config(trained)
        dyts[config.variant] = trained
    else:
        config = DyTConfig(bottleneck=settings.bottleneck)
        for variant in settings.variants:
            try:
                dyts[variant] = wrap(adapted("dyt", copy.deepcopy(base), variant=variant,
                                             bottleneck=config.bottleneck))
            except ValueError as err:  # a variant the backbone family refuses (Swin: attention dispatch)
                warnings.warn(f"dytune bench: no dyt-{variant} row: {err}", stacklevel=2)
    per_layer = not settings.checkpoint
    for dyt in dyts.values():
        _calibrated(dyt, calib, settings.keep_rate, per_layer)
    models: Dict[str, BenchModel] = {}

    def add(name: str, model: nn.Module, variant: Optional[str] = None,
            reference: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
            macs_model: Optional[nn.Module] = None) -> None:
        dynamic = variant is not None and reference is None
        models[name] = BenchModel(name, model, reference=_masked(model, task) if dynamic else reference,
                                  dynamic=dynamic, macs_model=macs_model, variant=variant)

    if "dense" in methods:
        add("dense", wrap(copy.deepcopy(base)))
    if "adaptformer" in methods and config.experts > 1:
        warnings.warn(f"dytune bench: no adaptformer row: the checkpoint's adapters are a mixture of {config.experts} "
                      f"experts, the adaptformer method's are plain", stacklevel=2)
    elif "adaptformer" in methods:
        add("adaptformer", wrap(adapted("adaptformer", copy.deepcopy(base), bottleneck=config.bottleneck)))
    if "dyt" in methods:
        for variant, dyt in dyts.items():
            add(f"dyt-{variant}", dyt, variant)
    if "dyt+logits" in methods:
        for variant, dyt in dyts.items():
            key = f"dyt-{variant}+logits-only"
            try:
                pruned = logits_only(copy.deepcopy(dyt))
            except ValueError as err:
                warnings.warn(f"dytune bench: no {key} row: {err}", stacklevel=2)
                continue
            add(key, pruned, variant)
    if "tome" in methods:
        try:
            add(f"tome-r{settings.tome_r}", wrap(apply_tome(copy.deepcopy(base), settings.tome_r,
                                                             settings.proportional_attention)))
        except ValueError as err:  # a backbone family whose tokens cannot be merged (Eva, Swin)
            warnings.warn(f"dytune bench: no tome-r{settings.tome_r} row: {err}", stacklevel=2)
    if "dyt+tome" in methods:
        for variant, dyt in dyts.items():
            merged = copy.deepcopy(dyt)
            vit = inner_vit(merged)
            try:
                apply_tome(vit, settings.tome_r,
                           settings.proportional_attention and supports_proportional_attention(vit))
            except ValueError as err:
                warnings.warn(f"dytune bench: no dyt-{variant}+tome-r{settings.tome_r} row: {err}", stacklevel=2)
                continue
            add(f"dyt-{variant}+tome-r{settings.tome_r}", _calibrated(merged, calib, settings.keep_rate, per_layer),
                variant)
    if "official" in methods:
        if not settings.official_repo:
            raise ValueError("the 'official' method needs official_repo (a clone of NUS-HPC-AI-Lab/Dynamic-Tuning)")
        from .official import OFFICIAL_VARIANT, official_model

        mirrored = dyts.get(OFFICIAL_VARIANT)
        if mirrored is None:
            raise ValueError(f"the official model mirrors the {OFFICIAL_VARIANT!r}-dispatch DyT model; include "
                             f"variant {OFFICIAL_VARIANT!r}")
        add(f"official-dyt-{OFFICIAL_VARIANT}", official_model(settings.official_repo, mirrored),
            reference=mirrored, macs_model=mirrored, variant=OFFICIAL_VARIANT)
    for entry in models.values():
        entry.model.to(device)
    return models


def _runner(model: Callable, task: Task, device: torch.device,
            precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(inputs: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return task.infer(model, inputs)
    return run


def environment(device: torch.device) -> Dict[str, Any]:
    """Device and library versions for the JSON report."""
    env = {
        "device": device.type, "python": platform.python_version(), "torch": torch.__version__,
        "timm": timm.__version__, "dytune": __version__, "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


@torch.inference_mode()
def run_benchmark(
        settings: BenchSettings,
        batch_sizes: Sequence[int] = (1, 32),
        precisions: Sequence[str] = ("fp32",),
        device: str = "cpu",
        warmup: int = 2,
        repeats: int = 5,
        compile: bool = False,
        models: Optional[Dict[str, BenchModel]] = None,
        runtime: str = EAGER,
        threads: Optional[int] = None,
) -> Dict[str, Any]:
    """Time every model of `build_models` on random batches, all models taking turns within each repeat.

    Returns a JSON-ready dict: the environment, the settings and one row per (precision, batch, model) with
    latency, throughput, MACs per image, speed-up over the dense model, the FLOPs-ideal speed-up (dense MACs /
    model MACs on the same images), the keep rate, peak memory and the largest logit difference from the
    model's reference path (sparse vs masked for DyT; dytune vs official) and, with `compile`, from eager mode.

    With another `runtime` than "eager" (`dytune.bench.runtimes`), every model is exported and timed there; DyT
    models twice (capacity routing, and exact threshold routing as "<name> threshold"), next to their eager sparse
    forward ("<name> eager"). `threads` sets the runtime's intra-op threads.
    """
    dev = torch.device(device)
    for precision in precisions:
        check_precision(dev, precision)
    models = models if models is not None else build_models(settings, dev)
    task = bench_task(settings)
    if runtime != EAGER:
        if compile or dev.type != "cpu" or list(precisions) != ["fp32"]:
            raise ValueError(f"runtime {runtime!r}: exported models are timed on the CPU in fp32, without --compile")
        calib = inputs_for(task, settings.calibration_images, settings.seed + 1, dev)
        models = exported_models(models, task, runtime, calib, threads)
    rows: List[Dict[str, Any]] = []
    for batch in batch_sizes:
        images = inputs_for(task, batch, settings.seed + 2, dev)
        stats = {name: _model_stats(entry, images, task) for name, entry in models.items()}
        for precision in precisions:
            fns = {}
            for name, entry in models.items():
                target = torch.compile(entry.model) if compile else entry.model
                fns[name] = entry.run or _runner(target, task, dev, precision)
            timings = time_interleaved(fns, images, warmup=warmup, repeats=repeats)
            dense = timings.get("dense")
            for name, timing in timings.items():
                row = {"method": name, "batch": batch, "precision": precision, "compile": compile,
                       **stats[name], **timing.to_dict()}
                row["runtime"] = EAGER if models[name].run is None else runtime
                row["peak_memory_mb"] = None if models[name].run else peak_memory_bytes(
                    fns[name], images, models[name].model) / 2 ** 20
                if compile:
                    eager = _runner(models[name].model, task, dev, precision)(images)
                    row["max_abs_diff_compiled_vs_eager"] = (fns[name](images) - eager).abs().max().item()
                if dense is not None:
                    row["speedup"] = timing.speedup_over(dense)
                    row["speedup_spread"] = timing.speedup_spread(dense)
                    if "dense" in stats:
                        row["flops_ideal_speedup"] = stats["dense"]["gmacs"] / stats[name]["gmacs"]
                rows.append(row)
    return {**environment(dev), "settings": settings.to_dict(), "task": task.name, "sample_unit": task.sample_unit,
            "runtime": runtime,
            "batch_sizes": list(batch_sizes),
            "precisions": list(precisions), "warmup": warmup, "repeats": repeats, "rows": rows}


def _model_stats(entry: BenchModel, inputs: torch.Tensor, task: Task) -> Dict[str, Any]:
    """MACs per sample (fp32), keep rate and the output difference from the reference path, on `inputs`."""
    if entry.execution is not None:
        with execution(entry.model, entry.execution):
            return _model_stats(dataclasses.replace(entry, execution=None), inputs, task)
    model = entry.model
    counted = entry.macs_model or model
    meter = InferenceMeter(counted, task.infer)
    logits, _ = meter(inputs)
    out: Dict[str, Any] = {"gmacs": meter.gmacs()}
    if counted is not model:
        logits = task.infer(model, inputs)
    if entry.dynamic:
        rate = meter.keep_rate()
        out["keep_rate"] = 1.0 if rate is None else rate
    if entry.run is not None:
        logits, reference = entry.run(inputs), logits
        out["max_abs_diff_vs_reference"] = (logits - reference).abs().max().item()
    elif entry.reference is not None:
        out["max_abs_diff_vs_reference"] = (logits - entry.reference(inputs)).abs().max().item()
    return out


def exported_models(models: Dict[str, BenchModel], task: Task, runtime: str, calibration: torch.Tensor,
                    threads: Optional[int] = None) -> Dict[str, BenchModel]:
    """The models of `build_models` exported to `runtime`; each DyT model with capacity routing (its capacities
    measured on `calibration` with its thresholds, so that the mean keep rate is the one calibrated) and with
    threshold routing, and kept eager (sparse) as "<name> eager". Each exported row is compared with its model in
    eager execution of the same routing."""
    compiler = runtime_compiler(runtime)
    example = calibration[:2]
    out: Dict[str, BenchModel] = {}
    for name, entry in models.items():
        if name in ("dense", "adaptformer"):
            out[name] = dataclasses.replace(entry, run=compiler(entry.model, task.infer, example, "capacity", threads))
            continue
        if name != f"dyt-{entry.variant}":
            warnings.warn(f"dytune bench: no {name} row on {runtime}: only dense, adaptformer and dyt are exported",
                          stacklevel=2)
            continue
        set_capacity(entry.model, plan_capacity(entry.model, calibration, forward=task.infer))
        out[name] = dataclasses.replace(entry, run=compiler(entry.model, task.infer, example, "capacity", threads),
                                        reference=None, execution="capacity")
        out[f"{name} threshold"] = dataclasses.replace(
            entry, run=compiler(entry.model, task.infer, example, "threshold", threads), reference=None)
        out[f"{name} eager"] = entry
    return out
