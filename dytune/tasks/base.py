"""The contract between the engine and a task (classification, video, segmentation, ...), and the task registry.

The engine (`dytune.engine`) trains and evaluates any registered task with one loop; a task says what is specific
to it: its data, the head it puts on the backbone, its loss and distillation, its inference step, its metric and
the shape of one sample. A task instance belongs to one run and is built from that run's `TrainConfig`.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

import timm
import torch
from torch import nn
from torch.utils.data import Dataset

from ..utils.settings import Settings

__all__ = ["Metric", "Task", "TASKS", "register_task", "unregister_task", "task_for_dataset", "build_task"]


class Metric(abc.ABC):
    """Accumulates predictions over an evaluation set, possibly sharded over processes.

    `update` is called per batch, `reduce` once on every process (it enters collectives, so every rank must call
    it, also one that saw no batch), then `compute` gives the numbers on every process. `reduce` combines the
    processes' states: counts and sums with `distributed.all_reduce_sum` (the built-in metrics), per-sample results
    with `distributed.all_gather_rows` for a metric that needs every sample at once (mAP, AUROC, a median).
    `primary` names the number that picks the best checkpoint, `greater_is_better` which way.
    """

    primary: str = ""
    greater_is_better: bool = True

    def better(self, value: float, than: float) -> bool:
        """Whether primary-metric value `value` beats `than`."""
        return value > than if self.greater_is_better else value < than

    @abc.abstractmethod
    def update(self, output: Any, targets: Any) -> None:
        """Add one batch: the task's inference output and the batch's targets."""

    @abc.abstractmethod
    def reduce(self) -> None:
        """Combine the state of all processes (summed or gathered; a no-op without torch.distributed)."""

    @abc.abstractmethod
    def compute(self) -> Dict[str, Any]:
        """The metrics of everything added (and reduced) so far; JSON-serialisable values."""


class Task(abc.ABC):
    """What the engine needs to know about one kind of problem.

    A subclass sets `name` and `datasets` (the `dataset=` values it reads) and implements the abstract methods;
    the defaults fit a task whose model is a timm backbone followed by a head on its features.

    Args:
        cfg: The run's `TrainConfig`.
    """

    name: ClassVar[str] = ""
    datasets: ClassVar[Tuple[str, ...]] = ()
    loss_name: ClassVar[str] = "loss_task"  # the key of the task loss in the objective's parts
    # what the head reads, so that token-reduction methods know where they apply:
    class_token_head: ClassVar[bool] = False  # only the class token of the last block (`dytune.logits_only` applies)
    mergeable_tokens: ClassVar[bool] = True  # a token set of any size (token merging applies; not a pixel grid)
    sample_unit: ClassVar[str] = "img"  # what one sample is called in throughputs (img/s, clip/s)
    # the task's own settings beyond TrainConfig's (a plug-in's): typed, in --help-config, YAML and key=value
    settings: ClassVar[Optional[Type[Settings]]] = None

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    # ---- data ----------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def build_dataset(self, train: bool) -> Dataset:
        """The training (`train=True`) or evaluation split the config names, with its transforms."""

    @abc.abstractmethod
    def num_classes(self, dataset: Dataset) -> int:
        """How many classes the model must output for `dataset` (e.g. from its `classes`)."""

    def class_names(self, dataset: Dataset) -> Optional[List[str]]:
        """The class names of `dataset` in label order, when it has them (saved with the run for `predict`)."""
        classes = getattr(dataset, "classes", None)
        return [str(c) for c in classes] if classes is not None and len(classes) else None

    def collate(self) -> Optional[Callable[[List[Any]], Any]]:
        """The DataLoader collate function (None: torch's default)."""
        return None

    def eval_batch_size(self) -> int:
        """Samples per evaluation batch (1 where test samples differ in size, e.g. segmentation images)."""
        return self.cfg.batch_size

    # ---- model ---------------------------------------------------------------------------------------------------
    def create_backbone(self, num_classes: int, pretrained: bool) -> nn.Module:
        """The timm backbone the config names (`model`, `model_kwargs`, `img_size`), with timm's pre-trained
        weights when `pretrained`; the engine loads `checkpoint_path` weights into it otherwise."""
        kwargs = dict(self.cfg.model_kwargs)
        kwargs.setdefault("img_size", self.cfg.img_size)
        kwargs.setdefault("num_classes", self.backbone_classes(num_classes))
        return timm.create_model(self.cfg.model, pretrained=pretrained, **kwargs)

    def backbone_classes(self, num_classes: int) -> int:
        """The class count of the backbone's own classifier (0 when the task puts its own head on the features)."""
        return 0

    def add_head(self, backbone: nn.Module, num_classes: int) -> nn.Module:
        """The task's model around the (already adapted, frozen) backbone; its head modules stay trainable."""
        return backbone

    def head(self, model: nn.Module) -> Sequence[nn.Module]:
        """The modules the task adds and always trains (besides the method's parameters)."""
        return ()

    def reset_head(self, model: nn.Module) -> None:
        """Start the head afresh for this run's classes, whatever the backbone's weights held (the engine skips
        this with `pretrained_head=true`). The default does nothing: heads that `add_head` builds are new."""

    def distributed(self, model: nn.Module) -> nn.Module:
        """The model as it should be wrapped in DistributedDataParallel (e.g. its heads' BatchNorm synchronised)."""
        return model

    def feature_cache(self, model: nn.Module) -> Optional[Tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module]]:
        """(features of an input batch, the head trained on them) when a frozen backbone's features can be computed
        once for linear probing; None where the head needs more than one feature vector per sample."""
        return None

    # ---- objective -----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def loss(self, output: Any, targets: Any) -> torch.Tensor:
        """The task loss of the model's training output on a batch."""

    @abc.abstractmethod
    def distill_loss(self, student: Any, teacher: Any, targets: Any) -> torch.Tensor:
        """How the complete model's output (`teacher`, already detached) is distilled into the dynamic model's."""

    # ---- inference and evaluation --------------------------------------------------------------------------------
    def infer(self, model: nn.Module, inputs: Any) -> Any:
        """The evaluation output for a batch (override for multi-view averaging or sliding windows). Evaluation,
        prediction, MAC counts, benchmarks and exported graphs all run it; however many backbone rows (frames, views,
        windows) a sample takes, MACs and keep rates are counted per sample from the rows each forward ran."""
        return model(inputs)

    @abc.abstractmethod
    def metric(self, num_classes: int, device: torch.device = torch.device("cpu")) -> Metric:
        """A fresh metric for one evaluation pass, its state on `device`."""

    @abc.abstractmethod
    def example_input(self) -> torch.Tensor:
        """One sample as the model takes it, batch dimension 1 (for MAC counts and benchmarks)."""

    def finalize_metrics(self, metrics: Dict[str, Any]) -> Dict[str, Any]:
        """The evaluation metrics with any numbers the task derives from them (e.g. MACs per view); called once per
        evaluation, after the cost and keep rates are in."""
        return metrics

    # ---- prediction on files (`dytune predict`) -------------------------------------------------------------------
    def load_sample(self, path: Path) -> torch.Tensor:
        """One input read from a file, transformed as for evaluation (no batch dimension)."""
        raise NotImplementedError(f"task {self.name!r} cannot read input files for prediction")

    def restore_prediction(self, output: Any, sample: torch.Tensor, path: Path) -> Tuple[Any, torch.Tensor]:
        """One file's inference output and sample (no batch dimension) at the file's own geometry, as
        `describe_prediction` and `save_outputs` take them (segmentation: logits and image at the image's size);
        by default both unchanged."""
        return output, sample

    def describe_prediction(self, output: Any, classes: Optional[List[str]], top_k: int) -> Dict[str, Any]:
        """The JSON-serialisable prediction for one sample's inference output (e.g. `label` and `top` classes)."""
        raise NotImplementedError(f"task {self.name!r} does not describe predictions")

    def save_outputs(self, output: Any, sample: torch.Tensor, folder: Path, stem: str,
                     classes: Optional[List[str]]) -> Dict[str, str]:
        """Files showing one sample's prediction (e.g. a mask PNG and an overlay), written to `folder`; returns
        {what: path}. Tasks whose prediction is fully described in JSON write nothing."""
        return {}

    def save_skip_map(self, model: nn.Module, sample: torch.Tensor, path: Path, title: str = "") -> Path:
        """A picture of the tokens each dispatched sub-block skipped on `sample`, saved to `path`."""
        raise NotImplementedError(f"task {self.name!r} draws no skip maps")

    def save_examples(self, model: nn.Module, inputs: torch.Tensor, targets: Any, path: Path,
                      classes: Optional[List[str]] = None) -> Path:
        """A picture of the model on a few evaluation samples with their targets (what `dytune demo` shows); by
        default the skip map of the first sample, titled with its label."""
        label = int(targets[0]) if torch.is_tensor(targets) and targets.ndim == 1 else None
        title = (classes[label] if classes and label is not None else f"label {label}") if label is not None else ""
        return self.save_skip_map(model, inputs[0], path, title=title)


TASKS: Dict[str, Type[Task]] = {}
_DATASET_TASK: Dict[str, str] = {}


def register_task(cls: Type[Task]) -> Type[Task]:
    """Class decorator adding a task and its datasets to the registry; a name already taken is an error."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a task needs a non-empty `name`")
    if cls.name in TASKS:
        raise ValueError(f"task {cls.name!r} is already registered (by {TASKS[cls.name].__module__}."
                         f"{TASKS[cls.name].__name__})")
    taken = [d for d in cls.datasets if d in _DATASET_TASK]
    if taken:
        raise ValueError(f"task {cls.name!r}: dataset(s) {taken} already belong to task "
                         f"{_DATASET_TASK[taken[0]]!r}")
    TASKS[cls.name] = cls
    _DATASET_TASK.update({d: cls.name for d in cls.datasets})
    return cls


def task_for_dataset(dataset: str) -> Type[Task]:
    """The task class that reads `dataset`."""
    if dataset not in _DATASET_TASK:
        known = ", ".join(sorted(_DATASET_TASK))
        raise ValueError(f"dataset={dataset!r}: no registered task reads it; expected one of {known}")
    return TASKS[_DATASET_TASK[dataset]]


def build_task(cfg: Any) -> Task:
    """The task instance of a run: the task that reads `cfg.dataset`."""
    return task_for_dataset(cfg.dataset)(cfg)


def unregister_task(name: str) -> None:
    """Remove a task and its datasets from the registry (for plug-ins and tests that register temporary tasks)."""
    if name not in TASKS:
        raise KeyError(f"task {name!r} is not registered")
    del TASKS[name]
    for dataset in [d for d, t in _DATASET_TASK.items() if t == name]:
        del _DATASET_TASK[dataset]
