"""Training configuration: one dataclass, YAML presets and `key=value` overrides.

Every setting is parsed to its declared type (the dataclass annotation) and checked against the range or choices
declared next to its help text (`dytune.utils.settings`), when a config is built (`TrainConfig(...)`, `from_dict`, `load`)
and whenever a field is assigned. A bad value therefore fails before a run writes anything, with a message naming the
setting, the value and what was expected. A method's settings are declared with the method (`dytune.methods`), a
task's own with the task (e.g. `dytune.tasks.video.VideoSettings`); TrainConfig holds them all as flat keys.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, Union

import yaml

from .methods import METHODS, LoRASettings, MoESettings, VPTSettings, methods_reading
from .utils.settings import AT_LEAST_0, AT_LEAST_1, POSITIVE, Bounds, Settings, _hints, setting as _setting

__all__ = ["TrainConfig", "Bounds", "RESUME_IGNORED", "differences", "read_preset"]

# Settings a resumed run may differ in: they do not change what is trained (stop_after, num_workers), or they say
# where the run lives rather than what it is (output_dir: a moved or copied run folder resumes; overwrite only
# concerns fresh runs).
RESUME_IGNORED: Tuple[str, ...] = ("stop_after", "num_workers", "output_dir", "overwrite")


def _methods() -> Sequence[str]:
    return tuple(METHODS)  # a function: plug-ins (custom_imports) register methods after this module is imported


def _datasets() -> Sequence[str]:
    from .tasks import TASKS  # late: the task registry may gain plug-in tasks and their datasets

    return tuple(dataset for task in TASKS.values() for dataset in task.datasets)


def _import_all(modules: Sequence[str]) -> None:
    """Import the `custom_imports` modules, naming the one that fails."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ValueError(f"custom_imports: cannot import {module!r} ({e})") from e


@dataclass
class RunSettings(Settings):
    """The settings of every run, whatever its method: data, model, optimisation and the run folder."""

    group: ClassVar[str] = "run"

    # plug-ins: first, so that the tasks and methods they register are known when the other settings are checked
    custom_imports: List[str] = _setting("Python modules to import first, e.g. a package that registers its own "
                                         "task (dytune.tasks.register_task) or method (register_method)", [])
    # data
    dataset: str = _setting("vtab (VTAB-1K layout), folder (ImageFolder with train/ and val/), a torchvision "
                            "dataset of the paper, or a dataset of another registered task", "vtab",
                            choices=_datasets)
    data_root: str = _setting("Dataset root (for vtab: the folder holding one sub-folder per task)", "")
    task: str = _setting("VTAB-1K task folder, e.g. cifar or clevr_count", "")
    train_split: str = _setting("Training split (vtab: train800val200 or train800)", "train800val200")
    eval_split: str = _setting("Evaluation split (vtab: test or val200; folder: val or test)", "test")
    img_size: int = _setting("Input resolution", 224, AT_LEAST_1)
    augment: str = _setting("none (resize only, VTAB) or rrc_flip (RandomResizedCrop + flip)", "none",
                            choices=("none", "rrc_flip"))
    mean: List[float] = _setting("Normalisation mean", [0.5, 0.5, 0.5])
    std: List[float] = _setting("Normalisation std", [0.5, 0.5, 0.5], POSITIVE)
    cache_images: bool = _setting("Keep decoded images (or video clips) in memory (small sets such as VTAB-1K)",
                                  False)
    skip_bad_images: bool = _setting("Skip missing or undecodable images (counted in the log) instead of failing",
                                     False)
    download: bool = _setting("Let torchvision download the dataset (needs internet)", False)
    num_workers: int = _setting("Data-loading worker processes", 4, AT_LEAST_0)
    # model
    model: str = _setting("timm model name", "vit_base_patch16_224")
    pretrained: bool = _setting("Load timm's pretrained weights (downloads; ignored with checkpoint_path)", False)
    checkpoint_path: str = _setting("Local backbone weights (.pth/.bin/.safetensors/.npz)", "")
    model_kwargs: Dict[str, Any] = _setting("Extra timm.create_model arguments (e.g. img_size, depth)", {})
    pretrained_head: bool = _setting("Keep the backbone's pre-trained classifier head when its class count equals "
                                     "the task's (default: a new head for every task, trunc-normal std 0.01)", False)
    # method
    method: str = _setting("Fine-tuning method (adaptformer: DyT's adapter without dispatcher; linear: head only)",
                           "dyt", choices=_methods)
    # optimisation
    epochs: int = _setting("Training epochs", 100, AT_LEAST_1)
    batch_size: int = _setting("Batch size per process", 64, AT_LEAST_1)
    lr: Optional[float] = _setting("Absolute learning rate; None: blr * global batch / 256", None, AT_LEAST_0)
    blr: float = _setting("Base learning rate per 256 images (used when lr is None)", 1e-3, POSITIVE)
    weight_decay: float = _setting("AdamW weight decay (not applied to biases, norms, tokens, position embeddings)",
                                   1e-4, AT_LEAST_0)
    warmup_epochs: float = _setting("Linear warm-up epochs (per-iteration)", 10.0, AT_LEAST_0)
    min_lr: float = _setting("Final learning rate of the decay", 1e-5, AT_LEAST_0)
    lr_schedule: str = _setting("Decay after the warm-up: cosine (to min_lr) or poly (mmseg's, to min_lr with "
                                "poly_power)", "cosine", choices=("cosine", "poly"))
    poly_power: float = _setting("Exponent of the poly schedule", 1.0, POSITIVE)
    accum_steps: int = _setting("Gradient accumulation steps", 1, AT_LEAST_1)
    clip_grad: Optional[float] = _setting("Clip the gradient norm to this value (None: no clipping)", None, POSITIVE)
    precision: str = _setting("Compute precision: bf16 on CPU and CUDA, fp16 on CUDA (with a gradient scaler)", "fp32",
                              choices=("fp32", "bf16", "fp16"))
    label_smoothing: float = _setting("Label smoothing", 0.0, Bounds(0, 1, high_open=True))
    seed: int = _setting("Random seed", 0, AT_LEAST_0)
    # run
    output_dir: str = _setting("Run folder: config, log, checkpoints, results", "runs/default",
                               pattern=(r"(?s).*\S.*", "a folder path (not empty)"))
    overwrite: bool = _setting("Start a fresh run in an output_dir that holds another run: delete that run's "
                               "files first (otherwise refused; continue a run with --resume instead)", False)
    eval_every: int = _setting("Evaluate every N epochs (and after the last)", 1, AT_LEAST_1)
    device: str = _setting("Device (auto: cuda when available, else cpu)", "auto",
                           pattern=(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, mps, cuda or cuda:N"))
    stop_after: Optional[int] = _setting("Stop this invocation after N epochs (time-boxed jobs; continue with "
                                         "resume)", None, AT_LEAST_1)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "custom_imports":
            _import_all(self.custom_imports)


def _declared_owners() -> Dict[str, Type[Settings]]:
    """Setting name -> the settings class that declares it, for the settings that registered tasks and methods
    declare beyond TrainConfig's own fields: the video and segmentation tasks', and those of plug-ins that
    `custom_imports` registered."""
    from .tasks import TASKS  # late: the registries gain plug-ins after this module is imported

    own = {f.name for f in dataclasses.fields(TrainConfig)}
    declared = [task.settings for task in TASKS.values() if task.settings is not None]
    owners: Dict[str, Type[Settings]] = {}
    for cls in dict.fromkeys(declared + [method.settings for method in METHODS.values()]):
        for name in (f.name for f in dataclasses.fields(cls)):
            if name in own:
                continue
            base = next(b for b in reversed(cls.__mro__) if name in b.__dict__.get("__annotations__", {}))
            if owners.setdefault(name, base) is not base:
                raise ValueError(f"setting {name!r} is declared by both {owners[name].__name__} and {base.__name__}; "
                                 f"a plug-in's settings need names of their own")
    return owners


def _default(cls: Type[Settings], name: str) -> Any:
    spec = cls.__dataclass_fields__[name]
    return spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()


@dataclass(init=False)
class TrainConfig(VPTSettings, LoRASettings, MoESettings, RunSettings):
    """Everything one training or evaluation run needs; written resolved to `<output_dir>/config.yaml`.

    The run's own settings (RunSettings), those of every built-in method (MoESettings, which holds the adapter
    and DyT settings, LoRASettings, VPTSettings) and those that a registered task or method declares in a
    `Settings` class of its own (`Task.settings`, e.g. the video task's; `Method.settings` of a plug-in), all as
    flat keys.
    Values are parsed to each field's type and checked against its range when the config is built and when a
    field is assigned; `TrainConfig.help()` lists every setting with what it accepts, grouped by their readers.

    Args:
        **values: Settings by name; the others keep their defaults. `custom_imports` is imported first.
    """

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_declared", {})
        self.custom_imports = values.pop("custom_imports", [])  # first: it registers the plug-ins named below
        owners = _declared_owners()
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(map(str, set(values) - set(fields) - set(owners)))
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; see `dytune train --help-config`")
        object.__setattr__(self, "_declared", {name: owner() for name, owner in owners.items()})
        for name in fields:
            if name != "custom_imports":
                setattr(self, name, values.get(name, _default(type(self), name)))
        for name in owners:
            if name in values:
                setattr(self, name, values[name])
        self.method_settings()  # the chosen method's settings together

    def __getattr__(self, name: str) -> Any:
        declared = self.__dict__.get("_declared", {})
        if name not in declared:
            raise AttributeError(f"{type(self).__name__} has no setting {name!r}")
        return getattr(declared[name], name)

    def __setattr__(self, name: str, value: Any) -> None:
        declared = self.__dict__.get("_declared", {})
        if name in declared:
            setattr(declared[name], name, value)  # parsed and checked by the declaring class
        else:
            super().__setattr__(name, value)

    def to_dict(self) -> Dict[str, Any]:
        """Every own setting, and each declared one that the run's task or method reads or that differs from its
        default (so a run saved in a process where other plug-ins are registered loads where they are not)."""
        from .tasks import task_for_dataset

        readers = [task_for_dataset(self.dataset).settings, METHODS[self.method].settings]
        read = {name for cls in readers if cls is not None for name in cls.__dataclass_fields__}
        declared = {name: getattr(self, name) for name, settings in self._declared.items()
                    if name in read or getattr(self, name) != _default(type(settings), name)}
        return {**dataclasses.asdict(self), **declared}

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with `changes` applied (plug-in settings included)."""
        return type(self)(**{**self.to_dict(), **changes})

    @classmethod
    def setting_fields(cls) -> Dict[str, Tuple[dataclasses.Field, Any]]:
        """Every setting a config takes now, its own and those that registered tasks and methods declare: name ->
        (dataclass field with the help text, range and choices; type annotation)."""
        own = {f.name: (f, _hints(cls)[f.name]) for f in dataclasses.fields(cls)}
        declared = {name: (owner.__dataclass_fields__[name], _hints(owner)[name])
                    for name, owner in _declared_owners().items()}
        return {**own, **declared}

    @classmethod
    def setting_names(cls) -> List[str]:
        """The names of `setting_fields`."""
        return list(cls.setting_fields())

    def method_settings(self) -> Settings:
        """The settings object of this run's method (`Method.settings`), which its `apply` and objective read."""
        method = METHODS[self.method]
        if not method.dynamic and self.distill:
            raise ValueError(f"distill=true: method {self.method!r} has no dynamic model to distil into; use a dyt* "
                             f"method")
        settings = method.settings.pick(self)
        if method.dynamic:
            settings.dyt_config()  # the DyT fields together (e.g. their combined checks)
        return settings

    def dump(self, path: Path) -> None:
        from .utils.io import atomic_write

        atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False)))

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a mapping of settings; errors name `source` (a file, 'overrides', a suite run) and the setting."""
        try:
            return cls(**{str(k): v for k, v in values.items()})
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def load(cls, files: Sequence[str] = (), overrides: Sequence[str] = ()) -> "TrainConfig":
        """Merge YAML presets (later wins; each resolved with its `base:` presets, `read_preset`) and `key=value`
        overrides (values parsed as YAML).

        The override of a text setting keeps the text as typed when YAML would read it as something else, so
        `task=2020` is the task '2020'.
        """
        values: Dict[str, Any] = {}
        for file in files:
            values.update(read_preset(file))
        texts: Dict[str, str] = {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            key, text = key.strip(), raw.strip()
            if not sep or not key:
                raise ValueError(f"override {item!r}: expected key=value")
            try:
                values[key] = yaml.safe_load(text) if text else ""
            except yaml.YAMLError as e:
                raise ValueError(f"override {item!r}: the value is not valid YAML ({e})") from None
            texts[key] = text
        if isinstance(values.get("custom_imports"), list):
            _import_all([str(m) for m in values["custom_imports"]])  # their settings' types decide the parsing below
        hints = {name: hint for name, (_, hint) in cls.setting_fields().items()}
        for key, text in texts.items():
            if hints.get(key) is str and not isinstance(values[key], str):
                values[key] = text
        return cls.from_dict(values, source=", ".join(list(files) + ["overrides"]))

    @classmethod
    def help(cls) -> str:
        """Every setting, one line each (name, what it accepts, default, help text), under a heading per group: the
        run's settings first, then each method's, naming the methods that read them."""
        fields = {f.name for f in dataclasses.fields(cls)}
        owner: Dict[str, type] = {}
        for base in reversed(cls.__mro__):  # the class that first declares a field owns it
            for name in base.__dict__.get("__annotations__", {}):
                if name in fields and name not in owner:
                    owner[name] = base
        lines: List[str] = []
        for group in dict.fromkeys(owner[f.name] for f in dataclasses.fields(cls)):
            names = [n for n, o in owner.items() if o is group]
            users = "every method" if group is RunSettings else ", ".join(methods_reading(group)) or "no method"
            lines.append(f"{group.group} settings ({users}):")
            lines += cls.help_lines(names)
        declared = _declared_owners()
        for group in dict.fromkeys(declared.values()):
            lines.append(f"{group.group} settings ({', '.join(_readers(group)) or 'no task or method'}):")
            lines += group.help_lines([name for name, owner in declared.items() if owner is group])
        return "\n".join(lines)


def read_preset(file: Union[str, Path], _chain: Tuple[Path, ...] = ()) -> Dict[str, Any]:
    """The settings of a YAML preset, on top of those of the presets its `base:` key names.

    `base:` names one preset file or a list of them, relative to the preset's folder; they are merged in order,
    then the preset's own keys win. A preset that is its own base, directly or through others, is refused with the
    chain of files. (A `dytune suite` file's `base:` is something else: a mapping of settings.)

    Args:
        file: The preset's path.

    Returns:
        Setting name -> value, without the `base` key.
    """
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    key = path.resolve()
    if key in _chain:
        names = " -> ".join(str(p) for p in (*_chain[_chain.index(key):], key))
        raise ValueError(f"{path}: presets form a cycle through base: {names}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
    bases = loaded.pop("base", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b.strip() for b in bases):
        raise ValueError(f"{path}: base={bases!r}: expected a preset file or a list of preset files, relative to "
                         f"{path.parent}")
    values: Dict[str, Any] = {}
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise FileNotFoundError(f"{path}: base preset {base!r} not found (looked for {base_path})")
        values.update(read_preset(base_path, (*_chain, key)))
    values.update(loaded)
    return values


def _readers(settings: Type[Settings]) -> List[str]:
    """The registered tasks and methods whose settings include `settings`."""
    from .tasks import TASKS

    tasks = [f"task {name}" for name, task in TASKS.items() if task.settings and issubclass(task.settings, settings)]
    return tasks + methods_reading(settings)


def differences(a: TrainConfig, b: TrainConfig, ignore: Tuple[str, ...] = ()) -> List[str]:
    """Settings whose values differ, as 'name: a -> b'."""
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: {da[k]!r} -> {db[k]!r}" for k in da if k not in ignore and da[k] != db[k]]
