"""Does the shipped mini backbone transfer? Linear probes on frozen features, pre-trained vs random weights.

For every mini-VTAB task: features of the frozen backbone (the head's input), a logistic regression whose C is chosen
on val200 after fitting on train800, refit on train800val200, top-1 accuracy on test. The same for the same
architecture with random weights, and for raw pixels (16 x 16 average-pooled), so the table shows what pre-training
adds.

    python benchmarks/backbone_probe.py --root data/minivtab --out docs/results/backbone_probe.json

`--assets DIR` probes the backbone files exported to DIR (`dytune pretrain --export DIR`) instead of the shipped
ones, e.g. a new backbone staged before it replaces dytune/assets.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import timm
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from dytune.utils.io import atomic_write
from dytune.mini.minivtab import TASKS, build_minivtab
from dytune.pretrained import mini_vit, mini_vit_info

SPLITS = ("train800", "val200", "test")


def load_split(folder: Path, split: str) -> Tuple[torch.Tensor, np.ndarray]:
    """Images (n, 3, H, W) in [0, 1] and labels of one list file."""
    images, labels = [], []
    for line in (folder / f"{split}.txt").read_text().splitlines():
        rel, label = line.split()
        with Image.open(folder / rel) as image:
            images.append(np.asarray(image.convert("RGB")))
        labels.append(int(label))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255, np.array(labels)


@torch.no_grad()
def features(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 250) -> np.ndarray:
    """The head's input (pre-logits) for images in [0, 1], normalised with mean and std 0.5."""
    out = [model.forward_head(model.forward_features((images[i:i + batch_size] - 0.5) / 0.5), pre_logits=True)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def probe(train: Tuple[np.ndarray, np.ndarray], val: Tuple[np.ndarray, np.ndarray],
          test: Tuple[np.ndarray, np.ndarray], grid: Tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)) -> Dict[str, float]:
    """Logistic regression: C picked on val after fitting on train, then refit on train + val; test accuracy (%)."""
    def fit(x: np.ndarray, y: np.ndarray, c: float):
        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x), y)
        return lambda z: clf.predict(scaler.transform(z))

    val_acc = {c: float((fit(*train, c)(val[0]) == val[1]).mean()) for c in grid}
    best = max(grid, key=lambda c: (val_acc[c], -c))
    predict = fit(np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]]), best)
    return {"test_acc": round(100 * float((predict(test[0]) == test[1]).mean()), 2), "C": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/minivtab", help="mini-VTAB folder (built there if missing)")
    parser.add_argument("--out", default="docs/results/backbone_probe.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--assets", default=None, metavar="DIR",
                        help="folder of the backbone files to probe (default: the shipped dytune/assets)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    build_minivtab(args.root)
    assets = Path(args.assets) if args.assets else None
    info = mini_vit_info(assets)
    models = {"pretrained": mini_vit(assets=assets)}
    torch.manual_seed(0)
    models["random_init"] = timm.create_model(info["timm_model"], pretrained=False, **info["timm_kwargs"]).eval()
    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    started = time.time()
    for task in tqdm(list(TASKS), desc="probe", unit="task"):
        data = {s: load_split(Path(args.root) / task, s) for s in SPLITS}
        results[task] = {}
        for name, model in models.items():
            feats = {s: (features(model, x), y) for s, (x, y) in data.items()}
            results[task][name] = probe(feats["train800"], feats["val200"], feats["test"])
        pixels = {s: (torch.nn.functional.avg_pool2d(x, 4).flatten(1).numpy(), y) for s, (x, y) in data.items()}
        results[task]["pixels"] = probe(pixels["train800"], pixels["val200"], pixels["test"])
        tqdm.write(f"{task}: " + ", ".join(f"{k} {v['test_acc']:.1f}" for k, v in results[task].items()))
    names: List[str] = ["pretrained", "random_init", "pixels"]
    mean = {n: round(float(np.mean([results[t][n]["test_acc"] for t in TASKS])), 2) for n in names}
    report = {"command": "python benchmarks/backbone_probe.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()
                                                                        if v is not None),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared)",
              "backbone": {k: info[k] for k in ("timm_model", "timm_kwargs", "test_acc", "steps")},
              "seconds": round(time.time() - started), "results": results, "mean": mean}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))
    print(f"mean over {len(TASKS)} tasks: " + ", ".join(f"{n} {mean[n]:.1f}" for n in names))


if __name__ == "__main__":
    main()
