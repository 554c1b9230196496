"""Configuration of a Dynamic Tuning (DyT) conversion: the one home of the adapter and dispatcher settings.

`DyTConfig` declares each setting once (type, default, range or choices, help text) with the typed-settings
machinery of `dytune.utils.settings`; the methods' settings (`dytune.methods`), and so the flat keys of `dytune train`,
take the fields they expose from it through `dyt_setting`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from ..utils.settings import AT_LEAST_0, AT_LEAST_1, POSITIVE, Bounds, Settings, setting

__all__ = ["VARIANTS", "DyTConfig", "dyt_setting"]

VARIANTS: Tuple[str, ...] = ("mlp", "attn", "attn_mlp", "layer")


@dataclass
class DyTConfig(Settings):
    """How `dytune.convert` adapts a Vision Transformer.

    Values are parsed to each field's type and checked against its range or choices when the config is built and
    whenever a field is assigned; errors name `DyTConfig.<field>`. `DyTConfig.help()` lists every field.
    """

    variant: str = setting(
        "What a skipped token skips: 'mlp' (the MLP sub-block, the paper's default), 'attn' (attention; kept tokens "
        "attend among themselves), 'attn_mlp' (a dispatcher and an adapter for each sub-block) or 'layer' (the whole "
        "block, decided by one dispatcher); for AdaptFormer, where the adapters sit.", "mlp", choices=VARIANTS)
    bottleneck: int = setting("Hidden width of each bottleneck adapter (the paper's 64; its VTAB-1K preset sets 8).",
                              64, AT_LEAST_1)
    adapter_scale: float = setting("Fixed factor on the adapter output (1 on VTAB-1K, 0.1 on full datasets).", 1.0)
    adapter_dropout: float = setting("Dropout on the adapter's hidden activation.", 0.1, Bounds(0, 1, high_open=True))
    experts: int = setting(
        "1 = plain adapter; N > 1 = mixture-of-experts adapter (DyT-dagger) whose N experts are merged per image by a "
        "router on the mean token.", 1, AT_LEAST_1)
    tau: float = setting("Gumbel-sigmoid temperature of the dispatchers during training.", 5.0, POSITIVE)
    tau_final: Optional[float] = setting(
        "If set, tau anneals linearly from `tau` to this value over training (`dytune.set_tau_progress(model, p)`, "
        "p from 0 to 1); None: constant.", None, POSITIVE)
    threshold: float = setting("A token is kept when its keep probability exceeds this.", 0.5,
                               Bounds(0, 1, low_open=True, high_open=True))
    target_rate: float = setting("Target mean keep rate r of the rate loss.", 0.5, Bounds(0, 1, low_open=True))
    layers: Optional[Tuple[int, ...]] = setting(
        "Indices of the blocks that get a dispatcher (None = all). The other blocks keep an adapter and compute every "
        "token, so `layers=()` is AdaptFormer.", None, AT_LEAST_0)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "layers" and isinstance(value, (list, tuple)) and len(set(map(repr, value))) != len(value):
            raise ValueError(f"DyTConfig.layers={value!r}: expected distinct block indices >= 0, or None")
        try:
            super().__setattr__(name, value)
        except ValueError as e:
            raise ValueError(f"DyTConfig.{e}") from None
        if name == "layers" and self.layers is not None:
            object.__setattr__(self, "layers", tuple(sorted(self.layers)))

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["layers"] is not None:
            out["layers"] = list(out["layers"])
        return out

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "DyTConfig":
        """Build from a mapping (e.g. a saved adapter_config.json); an unknown field is refused by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown DyTConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)


def dyt_setting(name: str, default: Any = dataclasses.MISSING) -> Any:
    """DyTConfig's field `name` (help text, range or choices and default) as a field of another settings class, so
    a setting exposed elsewhere (a method's flat key) is declared once.

    Args:
        name: A DyTConfig field.
        default: A different default for that class (e.g. the dyt-moe method's 4 experts); DyTConfig's otherwise.
    """
    spec = DyTConfig.__dataclass_fields__.get(name)
    if spec is None:
        raise ValueError(f"dyt_setting({name!r}): DyTConfig has no such field; fields: "
                         f"{sorted(DyTConfig.__dataclass_fields__)}")
    meta = spec.metadata
    return setting(meta["help"], spec.default if default is dataclasses.MISSING else default, bounds=meta["bounds"],
                   choices=meta["choices"], pattern=meta["pattern"])
