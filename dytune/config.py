"""Configuration of a Dynamic Tuning (DyT) conversion."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

VARIANTS: Tuple[str, ...] = ("mlp", "attn", "attn_mlp", "layer")


@dataclass
class DyTConfig:
    """How `dytune.convert` adapts a timm Vision Transformer.

    Every field has a `help` entry in its metadata; `DyTConfig.help()` prints them.
    """

    variant: str = field(default="mlp", metadata={"help": (
        "What a skipped token skips: 'mlp' (the MLP sub-block, the paper's default), 'attn' (attention; kept tokens "
        "attend among themselves), 'attn_mlp' (a dispatcher and an adapter for each sub-block) or 'layer' (the whole "
        "block, decided by one dispatcher).")})
    bottleneck: int = field(default=64, metadata={"help": "Hidden width of each bottleneck adapter (8 on VTAB-1K)."})
    adapter_scale: float = field(default=1.0, metadata={"help": "Fixed factor on the adapter output (0.1 on full datasets)."})
    adapter_dropout: float = field(default=0.1, metadata={"help": "Dropout on the adapter's hidden activation."})
    experts: int = field(default=1, metadata={"help": (
        "1 = plain adapter; N > 1 = mixture-of-experts adapter (DyT-dagger) whose N experts are merged per image by a "
        "router on the mean token.")})
    tau: float = field(default=5.0, metadata={"help": "Gumbel-sigmoid temperature of the dispatchers during training."})
    tau_final: Optional[float] = field(default=None, metadata={"help": (
        "If set, `dytune.set_tau_progress(model, p)` anneals tau linearly from `tau` to this value as p goes 0 -> 1.")})
    threshold: float = field(default=0.5, metadata={"help": "A token is kept when its keep probability exceeds this."})
    target_rate: float = field(default=0.5, metadata={"help": "Target mean keep rate r of the rate loss, in (0, 1]."})
    layers: Optional[Tuple[int, ...]] = field(default=None, metadata={"help": (
        "Indices of the blocks that get a dispatcher (None = all). The other blocks keep an adapter and compute every "
        "token, so `layers=()` is AdaptFormer.")})

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"DyTConfig.variant={self.variant!r}: expected one of {', '.join(VARIANTS)}")
        for name in ("bottleneck", "experts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DyTConfig.{name}={value!r}: expected an integer >= 1")
        if not 0.0 < self.target_rate <= 1.0:
            raise ValueError(f"DyTConfig.target_rate={self.target_rate!r}: expected a value in (0, 1]")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"DyTConfig.threshold={self.threshold!r}: expected a value in (0, 1)")
        if not self.tau > 0 or (self.tau_final is not None and not self.tau_final > 0):
            raise ValueError(f"DyTConfig.tau={self.tau!r}, tau_final={self.tau_final!r}: temperatures must be > 0")
        if not 0.0 <= self.adapter_dropout < 1.0:
            raise ValueError(f"DyTConfig.adapter_dropout={self.adapter_dropout!r}: expected a value in [0, 1)")
        if self.layers is not None:
            layers = tuple(self.layers)
            if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers) or len(set(layers)) != len(layers):
                raise ValueError(f"DyTConfig.layers={self.layers!r}: expected distinct block indices >= 0, or None")
            self.layers = tuple(sorted(layers))

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["layers"] is not None:
            out["layers"] = list(out["layers"])
        return out

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "DyTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown DyTConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    @classmethod
    def help(cls) -> str:
        return "\n".join(f"{f.name} (default {f.default!r}): {f.metadata['help']}" for f in dataclasses.fields(cls))
