"""PEFT baselines compared with DyT in the same engine: LoRA and VPT-deep."""
from .lora import LoRALinear, add_lora
from .vpt import PromptedBlock, add_deep_prompts

__all__ = ["LoRALinear", "add_lora", "PromptedBlock", "add_deep_prompts"]
