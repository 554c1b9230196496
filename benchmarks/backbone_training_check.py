"""Does DyT train from a random initialisation on each backbone family? One recipe, three tiny backbones.

A tiny ViT, a tiny Eva (EVA-02: rope, SwiGLU) and a tiny Swin, all built by timm with random weights (seed 0, nothing
downloaded), the backbone frozen; on the mini-VTAB task `scale` each is trained with DyT (r = 0.5) and, as references
on the same random model, AdaptFormer (DyT's adapters without dispatch), a linear head and full fine-tuning, every run
through `dytune train` with the same settings (RECIPE): trained on train800, evaluated on val200 after every epoch,
and the last epoch's model scored on test (`dytune eval ... eval_split=test`). For the frozen features' own content,
a logistic regression on the pooled features of the same random models (benchmarks/backbone_probe.py's probe: C
chosen on val200, test accuracy).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/backbone_training_check.py \
        --variants count count-lr0.03 lr0.03 bottleneck64
    python benchmarks/backbone_training_check.py --backbones swin --methods dyt   # one run (e.g. side by side)

Resumable: a finished run with the same settings is skipped (a run of other settings is refused: delete it or pick
another --runs folder); an unfinished one continues with `dytune train --resume`. The JSON (--out, written
atomically after every run) holds per run the settings, per-epoch train loss, keep rate and val accuracy, the
test accuracy, keep rate and MACs of the last model, and the probe accuracies.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import yaml

from dytune.utils.io import atomic_write
from dytune.utils.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
DYTUNE = [sys.executable, "-m", "dytune"]

# name -> (timm model, create_model arguments); ViT and Eva of one shape, a Swin of similar MACs
BACKBONES: Dict[str, tuple] = {
    "vit": ("vit_tiny_patch16_224", {"img_size": 64, "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3}),
    "eva": ("eva02_tiny_patch14_224", {"img_size": 64, "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3}),
    "swin": ("swin_tiny_patch4_window7_224", {"img_size": 64, "patch_size": 4, "window_size": 4, "embed_dim": 32,
                                              "depths": [2, 2, 2, 2], "num_heads": [1, 2, 4, 8]}),
}
METHODS = ("dyt", "adaptformer", "linear", "full")
RECIPE: Dict[str, Any] = {
    "dataset": "vtab", "task": "scale", "train_split": "train800", "eval_split": "val200", "img_size": 64,
    "augment": "none", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "cache_images": True, "num_workers": 0,
    "pretrained": False, "bottleneck": 8, "adapter_scale": 1.0, "target_rate": 0.5, "lr": 0.003,
    "weight_decay": 0.0001, "epochs": 30, "warmup_epochs": 2, "batch_size": 64, "seed": 0, "eval_every": 1,
}


# --variants: DyT on the ViT with one setting changed (why the earlier check, lr 0.03 on `count`, stayed at chance)
VARIANTS: Dict[str, Dict[str, Any]] = {"lr0.03": {"lr": 0.03}, "count": {"task": "count"},
                                       "count-lr0.03": {"task": "count", "lr": 0.03},
                                       "bottleneck64": {"bottleneck": 64}}


def settings(backbone: str, method: str, data_root: Path, runs: Path, variant: str = "") -> Dict[str, Any]:
    """The `dytune train` settings of one run: RECIPE, the backbone, the method and the variant's changes; its folder
    is runs/TASK/BACKBONE/METHOD[-VARIANT]."""
    model, kwargs = BACKBONES[backbone]
    values = {**RECIPE, "data_root": str(data_root), "model": model, "model_kwargs": kwargs, "method": method,
              **VARIANTS.get(variant, {})}
    values["output_dir"] = str(runs / values["task"] / backbone / (f"{method}-{variant}" if variant else method))
    return values


def overrides(values: Dict[str, Any]) -> List[str]:
    """key=value arguments, values in YAML flow style."""
    def flow(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).removesuffix("...\n")

    return [f"{k}={flow(v).strip()}" for k, v in values.items()]


def state(run_dir: Path, values: Dict[str, Any]) -> str:
    """'new', 'partial' or 'done'; raises if the folder holds a run of other settings."""
    config = run_dir / "config.yaml"
    if not config.exists():
        return "new"
    saved = yaml.safe_load(config.read_text())
    differ = {k: (saved.get(k), v) for k, v in values.items() if k != "output_dir" and saved.get(k) != v}
    if differ:
        raise SystemExit(f"{run_dir}: a run of other settings (saved, wanted: {differ}); delete it or use --runs")
    results = run_dir / "results.json"
    done = results.exists() and json.loads(results.read_text()).get("epochs_done") == values["epochs"]
    return "done" if done else "partial"


def train(run_dir: Path, values: Dict[str, Any]) -> float:
    """Train (or finish) one run; seconds spent, 0 when it was done already."""
    status = state(run_dir, values)
    if status == "done":
        print(f"{run_dir}: done, skipped", flush=True)
        return 0.0
    command = [*DYTUNE, "train", *(["--resume"] if status == "partial" else []), *overrides(values)]
    print(" ".join(command), flush=True)
    start = time.time()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f"{run_dir.name}.stderr.txt", "w") as log:
        subprocess.run(command, check=True, stderr=log)
    return time.time() - start


def test_metrics(run_dir: Path) -> Dict[str, Any]:
    """The last epoch's model on test (sparse execution for DyT), cached in the run folder."""
    cached = run_dir / "test_last.json"
    if not cached.exists():
        out = subprocess.run([*DYTUNE, "eval", str(run_dir), "eval_split=test", "--checkpoint", "last"],
                             check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        atomic_write(cached, lambda tmp: Path(tmp).write_text(out))
    return json.loads(cached.read_text())


def epochs(run_dir: Path) -> List[Dict[str, float]]:
    """Per epoch: train loss, train keep rate, val accuracy, val MACs (GMACs per image)."""
    import csv

    with open(run_dir / "log.csv") as f:
        return [{"epoch": int(r["epoch"]), "train_loss": round(float(r["train_loss"]), 4),
                 "train_keep_rate": round(float(r["train_keep_rate"]), 3), "val_acc": float(r["eval_acc"]),
                 "val_gmacs": float(r["eval_gmacs"])} for r in csv.DictReader(f) if r.get("eval_acc")]


def probe_accuracy(backbone: str, data_root: Path) -> Dict[str, float]:
    """Logistic regression on the pooled features of the random backbone, built as `dytune train` builds it (seeded,
    with the task's class count, which changes timm's initialisation): test accuracy and C."""
    import timm

    from dytune.engine.seeding import seed_everything

    sys.path.insert(0, str(Path(__file__).parent))
    from backbone_probe import features, load_split, probe

    folder = data_root / RECIPE["task"]
    data = {s: load_split(folder, s) for s in ("train800", "val200", "test")}
    model_name, kwargs = BACKBONES[backbone]
    classes = json.loads((folder / "meta.json").read_text())["num_classes"]
    seed_everything(RECIPE["seed"])
    model = timm.create_model(model_name, pretrained=False, num_classes=classes, **kwargs).eval()
    feats = {s: features(model, images) for s, (images, _) in data.items()}
    return probe(*((feats[s], data[s][1]) for s in ("train800", "val200", "test")))


def table(report: Dict[str, Any], variants: bool = False) -> str:
    """The runs (or the --variants runs) as a Markdown table (docs/backbones.md): loss and val accuracy over the
    epochs, test of the last model."""
    def order(key: str) -> tuple:
        backbone, method, *variant = key.split("/")
        return (list(BACKBONES).index(backbone), METHODS.index(method), variant)

    rows = []
    for key, run in sorted(report.get("runs", {}).items(), key=lambda item: order(item[0])):
        if (key.count("/") == 2) != variants:
            continue
        per_epoch, test = run["epochs"], run["test_last"]
        marks = [e["val_acc"] for e in per_epoch if e["epoch"] in (1, 10, 20) or e is per_epoch[-1]]
        keep = f"{test['keep_rate']:.2f}" if "keep_rate" in test else "1"
        rows.append([key, f"{run['trainable_params']:,}",
                     f"{per_epoch[0]['train_loss']:.3f} -> {per_epoch[-1]['train_loss']:.3f}",
                     " / ".join(f"{a:.1f}" for a in marks) + f" ({run['val_best']:.1f})", f"{test['acc']:.1f}",
                     keep, f"{1000 * test['gmacs']:.1f} M ({test['gmacs_pct_dense']:.1f} %)"])
    return markdown_table(["run", "trained params", "train loss, first -> last epoch",
                           "val acc, epoch 1 / 10 / 20 / last (best)", "test acc (last)", "keep rate (test)",
                           "MACs per image (% dense)"], rows)


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("data/minivtab"),
                        help="mini-VTAB folder (`dytune minivtab --root DIR`); relative paths from the repository root")
    parser.add_argument("--runs", type=Path, default=Path("runs/backbone-check"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/backbone_training_check.json"))
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), default=list(BACKBONES))
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=[],
                        help="also train DyT on the ViT with these changes to RECIPE")
    parser.add_argument("--no-probe", action="store_true", help="skip the logistic-regression probes")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    if not (args.data_root / RECIPE["task"] / "test.txt").exists():
        raise SystemExit(f"{args.data_root / RECIPE['task']}: no mini-VTAB task; build it with "
                         f"`dytune minivtab --root {args.data_root}`")
    header = {"command": "python benchmarks/backbone_training_check.py",
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), one thread per run "
                         f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
              "recipe": RECIPE, "backbones": {k: {"model": m, "kwargs": kw} for k, (m, kw) in BACKBONES.items()}}

    def load() -> Dict[str, Any]:
        return json.loads(args.out.read_text()) if args.out.exists() else {}

    def save(section: str, key: str, value: Dict[str, Any]) -> None:
        """Merge one entry into the file as it is now (several invocations may run side by side)."""
        report = {**load(), **header}
        report.setdefault(section, {})[key] = value
        report["runs"] = dict(sorted(report.get("runs", {}).items()))
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1) + "\n"))

    for backbone in args.backbones:
        if not args.no_probe and backbone not in load().get("probe_test_acc", {}):
            save("probe_test_acc", backbone, probe_accuracy(backbone, args.data_root))
        jobs = [(method, "") for method in args.methods]
        if backbone == "vit":
            jobs += [("dyt", variant) for variant in args.variants]
        for method, variant in jobs:
            values = settings(backbone, method, args.data_root, args.runs, variant)
            run_dir, key = Path(values["output_dir"]), "/".join(filter(None, (backbone, method, variant)))
            seconds = train(run_dir, values)
            results = json.loads((run_dir / "results.json").read_text())
            test = test_metrics(run_dir)
            previous = load().get("runs", {}).get(key, {})
            save("runs", key, {
                "run_dir": str(run_dir), "changed": VARIANTS.get(variant, {}),
                "trainable_params": results["trainable_params"], "dense_gmacs": results["dense_gmacs"],
                "seconds": round(seconds) or previous.get("seconds"), "epochs": epochs(run_dir),
                "val_last": results["final"]["acc"], "val_best": results["best"]["acc"],
                "val_best_epoch": results["best"]["epoch"], "test_last": test})
            print(f"{key}: val {results['final']['acc']:.1f} (best {results['best']['acc']:.1f}), "
                  f"test {test.get('acc')}", flush=True)
    print(table(load()), table(load(), variants=True), sep="\n\n")
    print("probes (test acc):", load().get("probe_test_acc"))


if __name__ == "__main__":
    main()
