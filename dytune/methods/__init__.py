"""The adaptation methods the engine compares (`--method`): one module per family, each declaring its settings class
(PEFT's per-method config) and registering its methods; `base` holds the contract and the registry.

`dyt`: dyt, dyt-nodistill, dyt-moe; `adaptformer`; `lora`; `vpt`; `probes`: linear, full. `TrainConfig` composes
every registered method's settings into flat keys (`lora_rank=4`), and `dytune train --help-config` lists them grouped
by the methods that read them. A method from outside the package registers the same way (`register_method`, loaded
through `custom_imports`).
"""
from .base import METHODS, Method, NoSettings, build_objective, freeze_but_head, methods_reading, register_method
from .dyt import AdapterSettings, DyTSettings, MoESettings
from . import adaptformer  # noqa: F401  (registers in this order: dyt..., adaptformer, lora, vpt, linear, full)
from .lora import LoRALinear, LoRASettings, add_lora
from .vpt import PromptedBlock, VPTSettings, add_deep_prompts
from . import probes  # noqa: F401

__all__ = ["AdapterSettings", "DyTSettings", "LoRALinear", "LoRASettings", "METHODS", "Method", "MoESettings",
           "NoSettings", "PromptedBlock", "VPTSettings", "add_deep_prompts", "add_lora", "build_objective",
           "freeze_but_head", "methods_reading", "register_method"]
