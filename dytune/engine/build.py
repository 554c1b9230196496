"""Building a run's model from its config and task, and saving / loading the trained tensors of a run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from safetensors.torch import load_file, save_file
from torch import nn

from ..core.checkpoint import (WEIGHTS_NAME, load_backbone_weights, load_trained_state, save_pretrained,
                               trained_state_dict)
from ..utils.io import atomic_write, read_json
from ..core.convert import is_converted
from ..core.flops import count_macs
from ..tasks.base import Task
from ..methods import METHODS, Method

__all__ = ["WEIGHTS", "build_model", "save_model", "load_model_weights", "read_run_meta"]

WEIGHTS = WEIGHTS_NAME  # the core's adapter file: a baseline's trained tensors take the same name and format
RUN_META = "run_meta.json"


def build_model(cfg: Any, task: Task, num_classes: int, method: Optional[Method] = None) -> Tuple[nn.Module, int]:
    """The task's model on the backbone with its weights and the method applied, and the dense MACs per sample
    (the model before the method changed it).

    Args:
        cfg: The run's TrainConfig.
        task: The run's task: it creates the backbone and puts its head on it.
        num_classes: Classes of the model's output.
        method: The method to apply (default: the one `cfg.method` names).
    """
    method = method or METHODS[cfg.method]
    backbone = task.create_backbone(num_classes, pretrained=cfg.pretrained and not cfg.checkpoint_path)
    if cfg.checkpoint_path:
        load_backbone_weights(backbone, cfg.checkpoint_path)
    model = task.add_head(backbone, num_classes)
    if not cfg.pretrained_head:
        task.reset_head(model)
    dense = int(count_macs(model.eval(), task.example_input(), forward=task.infer)[0])
    adapted = method.apply(backbone, cfg.method_settings())
    if adapted is not backbone:
        raise TypeError(f"method {method.name!r}: apply() must change the backbone in place and return it")
    for head in task.head(model):
        head.requires_grad_(True)
    return model, dense


def save_model(model: nn.Module, folder: Path, cfg: Any, num_classes: int, classes: Optional[List[str]] = None,
               task: str = "classification") -> None:
    """Trained tensors only: the core's save_pretrained format for a converted timm ViT and for a task model around
    one (so `from_pretrained` and `dytune bench --checkpoint` read it), the same safetensors file for baselines;
    plus the run's config, task and classes to rebuild it.

    This folder is what a run keeps of its model (best/, and the weights inside last/); resuming needs more (the
    optimizer, the step, every RNG state), which the trainer adds beside it as train_state.pt in the same
    checkpoint unit (`rundir.write_checkpoint`): one format to share and load a model, one to continue a run."""
    folder.mkdir(parents=True, exist_ok=True)
    if is_converted(model):
        save_pretrained(model, folder)
    else:
        state = trained_state_dict(model)
        atomic_write(folder / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    meta: Dict[str, Any] = {"num_classes": num_classes, "task": task}
    if classes:
        meta["classes"] = list(classes)
    atomic_write(folder / RUN_META, lambda tmp: Path(tmp).write_text(json.dumps(meta)))
    cfg.dump(folder / "train_config.yaml")


def read_run_meta(folder: Path) -> Dict[str, Any]:
    """The class count, task and class names a checkpoint folder was saved with."""
    file = folder / RUN_META
    meta = read_json(file, "a checkpoint folder written by dytune train")
    if not isinstance(meta, dict) or not isinstance(meta.get("num_classes"), int):
        raise ValueError(f"{file}: expected a JSON object with an integer num_classes")
    meta.setdefault("task", "classification")
    return meta


def load_model_weights(model: nn.Module, folder: Path) -> None:
    file = folder / WEIGHTS
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no model weights in this checkpoint folder")
    load_trained_state(model, load_file(str(file)), source=str(file))
