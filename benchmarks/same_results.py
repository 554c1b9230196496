"""Do two dytune revisions train the same models? Short runs whose weights and results must match bit for bit.

    git worktree add /tmp/before <rev>
    python benchmarks/same_results.py --tree /tmp/before --out /tmp/before.json
    python benchmarks/same_results.py --tree . --out /tmp/after.json
    python benchmarks/same_results.py --compare /tmp/before.json /tmp/after.json

Each revision runs in its own interpreter (`PYTHONPATH=<tree>`, started in the work folder: started in a checkout,
`python -m dytune` would import that checkout's dytune first, whatever PYTHONPATH says; the script checks which
dytune each revision imports and records it), one thread: `dytune pretrain` on the single-item,
the multi-task and the head-only source (a few steps of batch 16; sha256 of the final weights, the log's losses and
accuracies, the held-out accuracy), `dytune train` of dyt, adaptformer, linear, dyt-moe and lora on two mini-VTAB
tasks (2 epochs), and of dyt, adaptformer and linear on mini-video `shapes_motion` (96 training clips of 4 frames,
48 test clips x 3 temporal views, 2 epochs) and on mini-segmentation (48 training images, 24 test images, whole-image
inference, 2 epochs); for every `dytune train` run the sha256 of the trained tensors and results.json's metrics, keep
rates and MACs (throughput left out). The video and segmentation runs read subsets of the mini sets through a
folder of links in the work folder, the same for both revisions. Needs Fashion-MNIST, `dytune minivtab --root
data/minivtab`, `dytune minivideo --root data/minivideo --tasks shapes_motion` and `dytune miniseg --root
data/miniseg`; `--groups` runs a subset (pretrain, vtab, video, seg).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

PRETRAIN_COMMON = ["--batch-size", "16", "--epochs", "0.006", "--eval-size", "200", "--ckpt-every", "10"]
PRETRAIN_RUNS = {
    "single": ["--curriculum-epochs", "0.002", "--warmup-epochs", "0.001"],
    "multi": ["--curriculum-epochs", "0", "--max-items", "3", "--single-share", "0.25", "--full-rotation", "0.3",
              "--aux-weight", "0.3", "--patch-weight", "0.3", "--seed", "2"],
    "head": ["--init", "{multi}/last.pt", "--head-only", "--seed", "3", "--curriculum-epochs", "0", "--lr", "1e-3"],
}
METHODS = ["dyt", "adaptformer", "linear", "dyt-moe", "lora"]
TASKS = ["digits", "count"]
GROUPS = ("pretrain", "vtab", "video", "seg")
SHORT_METHODS = ["dyt", "adaptformer", "linear"]
COMMON = ["model=dytune_mini_vit", "pretrained=true", "num_workers=0", "epochs=2", "lr=0.01", "warmup_epochs=1",
          "eval_every=2", "bottleneck=8", "device=cpu"]
VIDEO = ["dataset=k400", "train_split=train96", "eval_split=test48", "img_size=64", "num_frames=4", "frame_stride=4",
         "test_views=3", "mean=[0.5,0.5,0.5]", "std=[0.5,0.5,0.5]", "cache_images=true", "batch_size=16",
         "adapter_scale=1.0", *COMMON]
SEG = ["dataset=ade20k", "train_split=train48", "eval_split=val24", "img_size=64", "seg_scale=[512,128]",
       "seg_inference=whole", "seg_channels=128", "mean=[0.5,0.5,0.5]", "std=[0.5,0.5,0.5]", "batch_size=16",
       "adapter_scale=1.0", "distill=false", "lr_schedule=poly", "min_lr=0.0", *COMMON]
VOLATILE = ("images_per_s", "images_per_s_spread", "threads", "step_time_s", "peak_memory_mb")


def _digest(tensors: Dict[str, Any]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].contiguous().numpy().tobytes())
    return h.hexdigest()


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    return value


def _link_subset(files: List[Path], folder: Path) -> None:
    folder.mkdir(parents=True)
    for f in files:
        (folder / f.name).symlink_to(f.resolve())


def video_subset(source: Path, work: Path, train: int = 96, test: int = 48) -> Path:
    """A K400-layout folder whose videos link to `source`'s, listing the first `train` clips of train800.txt and
    the first `test` of test.txt."""
    root = work / "minivideo"
    root.mkdir()
    (root / "videos").symlink_to((source / "videos").resolve())
    (root / "classes.txt").write_text((source / "classes.txt").read_text())
    for name, src, n in ((f"train{train}", "train800", train), (f"test{test}", "test", test)):
        lines = (source / f"{src}.txt").read_text().splitlines()[:n]
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


def seg_subset(source: Path, work: Path, train: int = 48, test: int = 24) -> Path:
    """An ADE20K-layout folder holding links to the first `train` training and `test` validation pairs of
    `source`."""
    root = work / "miniseg"
    for split, src, n in ((f"train{train}", "training", train), (f"val{test}", "validation", test)):
        images = sorted((source / "images" / src).glob("*.jpg"))[:n]
        _link_subset(images, root / "images" / split)
        _link_subset([source / "annotations" / src / (p.stem + ".png") for p in images], root / "annotations" / split)
    (root / "classes.txt").write_text((source / "classes.txt").read_text())
    return root


def _train(dytune: List[str], env: Dict[str, str], settings: List[str], out: Path) -> Dict[str, Any]:
    """Run `dytune train` and report the digest of its trained tensors and its stable results."""
    from safetensors.torch import load_file

    done = subprocess.run([*dytune, "train", *settings, f"output_dir={out}"], env=env, capture_output=True, text=True,
                          cwd=out.parent)
    if done.returncode:
        raise RuntimeError(f"dytune train {' '.join(settings)} failed:\n{done.stderr[-3000:]}")
    results = json.loads((out / "results.json").read_text())
    weights = load_file(str(next((out / "last").glob("*.safetensors"))))
    print(out.name, results["final"][results["metric"]], _digest(weights)[:16], flush=True)
    return {"weights": _digest(weights), "final": _stable(results["final"]), "dense_gmacs": results["dense_gmacs"]}


def run(tree: Path, root: Path, work: Path, groups: Sequence[str] = GROUPS, video_root: Optional[Path] = None,
        seg_root: Optional[Path] = None) -> Dict[str, Any]:
    import torch

    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "OMP_NUM_THREADS": "1"}
    dytune = [sys.executable, "-m", "dytune"]
    imported = Path(subprocess.run([sys.executable, "-c", "import dytune; print(dytune.__file__)"], env=env, cwd=work,
                                   check=True, capture_output=True, text=True).stdout.strip())
    if tree.resolve() not in imported.resolve().parents:
        raise RuntimeError(f"--tree {tree}: its interpreter imports {imported}, not the tree's dytune")
    report: Dict[str, Any] = {"dytune": str(imported)}
    for name, extra in PRETRAIN_RUNS.items() if "pretrain" in groups else ():
        out = work / f"pretrain_{name}"
        args = [a.format(multi=work / "pretrain_multi") for a in extra]
        subprocess.run([*dytune, "pretrain", "--out", str(out), *PRETRAIN_COMMON, *args], env=env, check=True,
                       capture_output=True, cwd=work)
        # last.pt before pretrain used the engine's run folder, last/state.pt after
        state = torch.load(out / "last.pt" if (out / "last.pt").is_file() else out / "last" / "state.pt",
                           weights_only=True)
        with open(out / "log.csv", newline="") as f:
            log = [{k: r[k] for k in ("step", "lr", "train_loss", "train_acc", "test_acc")} for r in csv.DictReader(f)]
        report[f"pretrain/{name}"] = {"weights": _digest({**state["model"], **state.get("aux", {})}), "log": log,
                                      "test_acc": json.loads((out / "summary.json").read_text())["test_acc"]}
        print(name, report[f"pretrain/{name}"]["weights"][:16], flush=True)
    for method in METHODS if "vtab" in groups else ():
        for task in TASKS:
            report[f"train/{method}/{task}"] = _train(dytune, env, [
                "dataset=vtab", f"data_root={root}", f"task={task}", "img_size=64", "model=dytune_mini_vit",
                "pretrained=true", "cache_images=true", "num_workers=0", "epochs=2", "batch_size=64", "lr=0.01",
                "warmup_epochs=1", "eval_every=2", f"method={method}", "bottleneck=8", "lora_rank=4", "experts=2",
                "device=cpu"], work / f"train_{method}_{task}")
    if "video" in groups:
        data = video_subset(video_root, work)
        for method in SHORT_METHODS:
            report[f"train/{method}/shapes_motion"] = _train(dytune, env, [f"data_root={data}", f"method={method}",
                                                                           *VIDEO], work / f"video_{method}")
    if "seg" in groups:
        data = seg_subset(seg_root, work)
        for method in SHORT_METHODS:
            report[f"train/{method}/miniseg"] = _train(dytune, env, [f"data_root={data}", f"method={method}", *SEG],
                                                       work / f"seg_{method}")
    return report


def compare(a: Path, b: Path) -> int:
    ra, rb = ({k: v for k, v in json.loads(f.read_text()).items() if k != "dytune"} for f in (a, b))
    differ: List[str] = [k for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)]
    for key in sorted(set(ra) | set(rb)):
        print(f"{'same' if key not in differ else 'DIFFERENT'}  {key}")
    print(f"{len(ra) - len(differ)} of {len(ra)} identical")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=Path("."), help="a dytune checkout (its dytune/ is imported)")
    parser.add_argument("--root", type=Path, default=Path("data/minivtab"), help="mini-VTAB data")
    parser.add_argument("--video-root", type=Path, default=Path("data/minivideo/shapes_motion"),
                        help="mini-video shapes_motion data")
    parser.add_argument("--seg-root", type=Path, default=Path("data/miniseg"), help="mini-segmentation data")
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS), help="the runs to make")
    parser.add_argument("--out", type=Path, help="where to write the report (JSON)")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"), help="compare two reports and exit")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("--out is required unless --compare")
    with tempfile.TemporaryDirectory() as work:
        report = run(args.tree, args.root.resolve(), Path(work), args.groups, args.video_root.resolve(),
                     args.seg_root.resolve())
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
