"""`dytune bench`: inference speed of dense, AdaptFormer, DyT, ToMe and DyT + ToMe models; accuracy vs budget."""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from ..core.config import VARIANTS
from ..utils.runtime import PRECISIONS, timing_warning
from ..tasks import TASKS
from .argtypes import keep_rates_arg
from ..utils.io import atomic_write
from ..bench.runner import METHODS, BenchSettings, build_models, run_benchmark

EPILOG = """examples:
  dytune bench                                        # ViT-B/16, CPU fp32, batch 1 and 32, random weights, keep 0.5
  dytune bench --variants all --batch-sizes 32 --precision fp32,bf16
  dytune bench --device cuda --precision bf16 --batch-sizes 1,256 --compile
  dytune bench --checkpoint out/cifar100 --keep-rate none   # trained thresholds
  dytune bench --official-repo ~/Dynamic-Tuning --methods dense,dyt   # + the official fast-inference model
  dytune bench --checkpoint out/cifar100 --accuracy-data val.pt --budgets 0.3,0.5,0.7,1.0
  dytune bench --task video --batch-sizes 1,8              # 8-frame 224 px clips, one view, attentive-pool head
  dytune bench --task segmentation --set img_size=512 --batch-sizes 1   # UperNet at 512 x 512 (1,024 tokens)
  dytune bench --task segmentation --model dytune_mini_vit --set img_size=128 --set seg_channels=128
  dytune bench --runtime onnxruntime --methods dense,adaptformer,dyt --threads 1   # ONNX exports on ONNX Runtime
"""


def _csv(cast):
    return lambda text: [cast(v) for v in text.split(",") if v]


def _timm_arg(text: str) -> Tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--timm-arg {text!r}: expected KEY=VALUE, e.g. depth=6")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _task_setting(text: str) -> Tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE, e.g. num_frames=8")
    return key, value


def _keep_rate(text: str):
    return None if text.lower() == "none" else float(text)


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    defaults = BenchSettings()  # the one declaration of each setting's default
    parser = subparsers.add_parser(
        name, help="time dense / AdaptFormer / DyT / ToMe / DyT+ToMe inference; accuracy vs keep rate",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=defaults.model, help="timm backbone name")
    parser.add_argument("--timm-arg", type=_timm_arg, action="append", default=[], metavar="KEY=VALUE",
                        help="timm.create_model override, repeatable (e.g. img_size=64, depth=2)")
    parser.add_argument("--task", default=defaults.task, choices=sorted(TASKS),
                        help="whose model is timed: the task's head on every backbone, its sample and inference")
    parser.add_argument("--set", type=_task_setting, action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="task setting of `dytune train` (e.g. num_frames=8, img_size=512, seg_channels=768, "
                             "seg_inference=slide), repeatable; video clips are one view unless test_views=N")
    parser.add_argument("--num-classes", type=int, default=defaults.num_classes)
    parser.add_argument("--checkpoint", default=None, help="dytune.save_pretrained directory (else random weights)")
    parser.add_argument("--backbone-weights", default=None, help="local backbone weights (.pth/.safetensors/.npz)")
    parser.add_argument("--methods", type=_csv(str), default=list(defaults.methods),
                        help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--variants", default=",".join(defaults.variants),
                        help=f"comma list of {', '.join(VARIANTS)}, or 'all'")
    parser.add_argument("--keep-rate", type=_keep_rate, default=defaults.keep_rate,
                        help="calibrate dispatchers to this keep rate ('none': keep a checkpoint's thresholds)")
    parser.add_argument("--bottleneck", type=int, default=defaults.bottleneck,
                        help="adapter width of random-weight models")
    parser.add_argument("--tome-r", type=int, default=defaults.tome_r, help="tokens merged per block (ToMe)")
    parser.add_argument("--no-proportional-attention", action="store_true")
    parser.add_argument("--batch-sizes", type=_csv(int), default=[1, 32])
    parser.add_argument("--precision", type=_csv(str), default=["fp32"],
                        help=f"comma list of {', '.join(PRECISIONS)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model")
    parser.add_argument("--runtime", default="eager",
                        help="eager, onnxruntime or openvino: time ONNX exports of dense, AdaptFormer and DyT "
                             "(capacity and threshold routing) there, next to eager DyT (needs the export extra)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; the models take turns in each")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--calibration-images", type=int, default=defaults.calibration_images)
    parser.add_argument("--official-repo", default=None,
                        help="clone of NUS-HPC-AI-Lab/Dynamic-Tuning: also time its fast-inference model")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--accuracy-data", default=None,
                        help="accuracy-vs-budget mode: .pt/.safetensors with 'images' and 'labels', or an "
                             "ImageFolder directory")
    parser.add_argument("--budgets", type=keep_rates_arg, default=[0.3, 0.5, 0.7, 0.9, 1.0],
                        help="keep rates of the accuracy sweep")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default runs/bench/<model>_<device>.json; <model>_<task>_<device>.json "
                             "for another task than classification)")
    parser.set_defaults(run=run)
    return parser


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    methods = list(args.methods)
    if args.official_repo and "official" not in methods:
        methods.append("official")
    variants = VARIANTS if args.variants == "all" else tuple(v for v in args.variants.split(",") if v)
    return BenchSettings(
        model=args.model, timm_kwargs=dict(args.timm_arg), num_classes=args.num_classes, checkpoint=args.checkpoint,
        backbone_weights=args.backbone_weights, methods=tuple(methods), variants=tuple(variants),
        keep_rate=args.keep_rate, bottleneck=args.bottleneck, tome_r=args.tome_r,
        proportional_attention=not args.no_proportional_attention, calibration_images=args.calibration_images,
        official_repo=args.official_repo, seed=args.seed, task=args.task, task_settings=dict(args.settings))


def format_table(result: Dict[str, Any]) -> str:
    """The rows of `run_benchmark` as a fixed-width text table."""
    unit = result.get("sample_unit", "img")
    head = (f"{'method':<24}{'prec':>5}{'batch':>6}{'GMACs':>7}{'keep':>6}{'ms/batch':>16}{unit + '/s':>9}"
            f"{'speed-up':>13}{'ideal':>7}{'peak MB':>9}{'max diff':>10}")
    compiled = any("max_abs_diff_compiled_vs_eager" in row for row in result["rows"])
    if compiled:
        head += f"{'vs eager':>10}"
    lines = [f"{result['device']} ({result.get('gpu', result['cpu'])}, {result['threads']} threads), torch "
             f"{result['torch']}, timm {result['timm']}, dytune {result['dytune']}; "
             f"median of {result['repeats']} interleaved repeats, ± half the range (speed-up: of the per-round "
             f"speed-ups, in % of it)", head, "-" * len(head)]

    def num(row: Dict[str, Any], key: str, fmt: str) -> str:
        return format(row[key], fmt) if row.get(key) is not None else "-"

    for row in result["rows"]:
        latency = f"{row['median_ms']:.1f}±{row['spread_ms']:.1f}"
        speedup = "-" if row.get("speedup") is None else f"{row['speedup']:.3f}±{100 * row['speedup_spread']:.0f}%"
        lines.append(f"{row['method']:<24}{row['precision']:>5}{row['batch']:>6}{row['gmacs']:>7.2f}"
                     f"{num(row, 'keep_rate', '.3f'):>6}{latency:>16}{row['images_per_s']:>9.2f}"
                     f"{speedup:>13}{num(row, 'flops_ideal_speedup', '.3f'):>7}"
                     f"{num(row, 'peak_memory_mb', '.1f'):>9}{num(row, 'max_abs_diff_vs_reference', '.1e'):>10}"
                     + (f"{num(row, 'max_abs_diff_compiled_vs_eager', '.1e'):>10}" if compiled else ""))
    widest = max((row for row in result["rows"] if row.get("speedup_spread") is not None),
                 key=lambda row: row["speedup_spread"], default=None)
    warning = widest and timing_warning(f"the speed-up of {widest['method']} at batch {widest['batch']}",
                                        widest["speedup_spread"])
    return "\n".join(lines + ([warning] if warning else []))


def _load_labelled(path: str, model: torch.nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    source = Path(path)
    if source.is_dir():
        import timm.data
        from torchvision.datasets import ImageFolder

        transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
        data = ImageFolder(str(source), transform=transform)
        images, labels = zip(*(data[i] for i in range(len(data))))
        return torch.stack(images), torch.tensor(labels)
    if source.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(source))
    else:
        tensors = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(tensors, dict) or not {"images", "labels"} <= set(tensors):
        raise ValueError(f"{source}: expected a dict with 'images' [N, C, H, W] and 'labels' [N]")
    return tensors["images"].float(), tensors["labels"].long()


def run_accuracy(args: argparse.Namespace, settings: BenchSettings) -> Dict[str, Any]:
    """Accuracy vs keep rate of the DyT model(s); the first `--calibration-images` images calibrate, the rest
    evaluate."""
    from ..bench.accuracy import accuracy_vs_budget

    settings.methods = ("dyt",)
    models = build_models(settings, torch.device(args.device))
    # decoded once: the models share one backbone, hence one data config
    images, labels = _load_labelled(args.accuracy_data, next(iter(models.values())).model)
    split = min(args.calibration_images, images.shape[0] // 2)
    batches = [(images[i:i + 64], labels[i:i + 64]) for i in range(split, images.shape[0], 64)]
    sweeps = {name: accuracy_vs_budget(entry.model, batches, args.budgets, images[:split])
              for name, entry in models.items()}
    return {"accuracy_data": str(args.accuracy_data), "calibration_images": args.calibration_images,
            "accuracy_vs_budget": sweeps}


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    for p in args.precision:
        if p not in PRECISIONS:
            raise ValueError(f"dytune bench: --precision {p!r}: expected a comma list of {', '.join(PRECISIONS)}")
    settings = settings_from_args(args)
    if args.accuracy_data:
        result = run_accuracy(args, settings)
        for name, rows in result["accuracy_vs_budget"].items():
            print(f"{name}: keep rate -> top-1 accuracy, GMACs per image")
            for row in rows:
                print(f"  {row['target_keep_rate']:.2f} (measured {row['keep_rate']:.3f})  acc {row['accuracy']:.4f}"
                      f"  {row['gmacs']:.3f} GMACs")
    else:
        result = run_benchmark(settings, args.batch_sizes, args.precision, args.device, args.warmup, args.repeats,
                               args.compile, runtime=args.runtime, threads=args.threads)
        print(format_table(result))
    result["argv"] = sys.argv
    stem = args.model if settings.task == BenchSettings().task else f"{args.model}_{settings.task}"
    out = args.out or Path("runs") / "bench" / f"{stem}_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(out, lambda tmp: Path(tmp).write_text(text))  # a killed benchmark never leaves half a JSON file
    print(f"wrote {out}")
    return 0
