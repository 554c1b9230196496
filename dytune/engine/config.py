"""Training configuration: one dataclass, YAML presets and `key=value` overrides."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from ..config import DyTConfig


def _help(text: str, default: Any) -> Any:
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class TrainConfig:
    """Everything one training or evaluation run needs; written resolved to `<output_dir>/config.yaml`."""

    # data
    dataset: str = _help("vtab, folder (ImageFolder with train/ and val/), or a torchvision name: cifar100, svhn, "
                         "food101, fgvc_aircraft, oxford_iiit_pet, stanford_cars, flowers102, dtd, fashion_mnist", "vtab")
    data_root: str = _help("Dataset root (for vtab: the folder holding one sub-folder per task)", "")
    task: str = _help("VTAB-1K task folder, e.g. cifar or clevr_count", "")
    train_split: str = _help("Training split (vtab: train800val200 or train800)", "train800val200")
    eval_split: str = _help("Evaluation split (vtab: test or val200; folder: val or test)", "test")
    img_size: int = _help("Input resolution", 224)
    augment: str = _help("none (resize only, VTAB) or rrc_flip (RandomResizedCrop + flip)", "none")
    mean: List[float] = _help("Normalisation mean", [0.5, 0.5, 0.5])
    std: List[float] = _help("Normalisation std", [0.5, 0.5, 0.5])
    cache_images: bool = _help("Keep decoded images in memory (small sets such as VTAB-1K)", False)
    skip_bad_images: bool = _help("Skip missing or undecodable images (counted in the log) instead of failing", False)
    download: bool = _help("Let torchvision download the dataset (needs internet)", False)
    num_workers: int = _help("Data-loading worker processes", 4)
    # model
    model: str = _help("timm model name", "vit_base_patch16_224")
    pretrained: bool = _help("Load timm's pretrained weights (downloads; ignored with checkpoint_path)", False)
    checkpoint_path: str = _help("Local backbone weights (.pth/.bin/.safetensors/.npz)", "")
    model_kwargs: Dict[str, Any] = _help("Extra timm.create_model arguments (e.g. img_size, depth)", {})
    # method
    method: str = _help("dyt, dyt-nodistill, dyt-moe, adaptformer, lora, vpt, linear or full", "dyt")
    variant: str = _help("DyT dispatch variant: mlp, attn, attn_mlp or layer", "mlp")
    bottleneck: int = _help("Adapter bottleneck (8 on VTAB-1K, 64 on full datasets)", 8)
    adapter_scale: float = _help("Adapter output scale (1 on VTAB-1K, 0.1 on full datasets)", 1.0)
    adapter_dropout: float = _help("Adapter dropout", 0.1)
    experts: int = _help("Experts of the MoE adapter (dyt-moe)", 4)
    target_rate: float = _help("Target keep rate r of DyT", 0.5)
    rate_weight: float = _help("Weight of the rate loss", 2.0)
    tau: float = _help("Gumbel-sigmoid temperature", 5.0)
    tau_final: Optional[float] = _help("Anneal tau linearly to this value over training (None: constant)", None)
    lora_rank: int = _help("LoRA rank on qkv", 8)
    lora_alpha: float = _help("LoRA scaling numerator (scale = alpha / rank)", 8.0)
    vpt_tokens: int = _help("VPT-deep prompt tokens per block", 10)
    # optimisation
    epochs: int = _help("Training epochs", 100)
    batch_size: int = _help("Batch size per process", 64)
    lr: Optional[float] = _help("Absolute learning rate; None: blr * global batch / 256", None)
    blr: float = _help("Base learning rate per 256 images (used when lr is None)", 1e-3)
    weight_decay: float = _help("AdamW weight decay (not applied to biases, norms, tokens, position embeddings)", 1e-4)
    warmup_epochs: float = _help("Linear warm-up epochs (per-iteration)", 10.0)
    min_lr: float = _help("Final learning rate of the cosine decay", 1e-5)
    accum_steps: int = _help("Gradient accumulation steps", 1)
    clip_grad: Optional[float] = _help("Clip the gradient norm to this value (None: no clipping)", None)
    precision: str = _help("fp32, bf16 (CPU and CUDA) or fp16 (CUDA, with a gradient scaler)", "fp32")
    label_smoothing: float = _help("Label smoothing", 0.0)
    seed: int = _help("Random seed", 0)
    # run
    output_dir: str = _help("Run folder: config, log, checkpoints, results", "runs/default")
    eval_every: int = _help("Evaluate every N epochs (and after the last)", 1)
    device: str = _help("auto, cpu, cuda or cuda:N", "auto")
    stop_after: Optional[int] = _help("Stop this invocation after N epochs (time-boxed jobs; continue with resume)", None)

    def __post_init__(self) -> None:
        from .methods import METHODS

        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: expected one of {', '.join(METHODS)}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision={self.precision!r}: expected fp32, bf16 or fp16")
        for name in ("epochs", "batch_size", "accum_steps", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected an integer >= 1")
        self.dyt_config()  # validates the DyT fields

    def dyt_config(self, layers: Optional[Sequence[int]] = None) -> DyTConfig:
        """The DyTConfig of the DyT-family methods."""
        return DyTConfig(variant=self.variant, bottleneck=self.bottleneck, adapter_scale=self.adapter_scale,
                         adapter_dropout=self.adapter_dropout, experts=self.experts if self.method == "dyt-moe" else 1,
                         tau=self.tau, tau_final=self.tau_final, target_rate=self.target_rate, layers=layers)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def dump(self, path: Path) -> None:
        from ..checkpoint import atomic_write

        atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False)))

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config") -> "TrainConfig":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"{source}: unknown setting(s) {unknown}; see `dytune train --help-config`")
        coerced = {}
        for key, value in values.items():
            default = fields[key].default
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            coerced[key] = value
        return cls(**coerced)

    @classmethod
    def load(cls, files: Sequence[str] = (), overrides: Sequence[str] = ()) -> "TrainConfig":
        """Merge YAML files (later wins) and `key=value` overrides (values parsed as YAML)."""
        values: Dict[str, Any] = {}
        for file in files:
            path = Path(file)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: config file not found")
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping of settings")
            values.update(loaded)
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise ValueError(f"override {item!r}: expected key=value")
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        return cls.from_dict(values, source=", ".join(list(files) + ["overrides"]))

    @classmethod
    def help(cls) -> str:
        return "\n".join(f"  {f.name} (default {f.default if f.default is not dataclasses.MISSING else f.default_factory()!r}): "
                         f"{f.metadata['help']}" for f in dataclasses.fields(cls))


def differences(a: TrainConfig, b: TrainConfig, ignore: Tuple[str, ...] = ()) -> List[str]:
    """Settings whose values differ, as 'name: a -> b'."""
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: {da[k]!r} -> {db[k]!r}" for k in da if k not in ignore and da[k] != db[k]]
