"""AdaptFormer: DyT's bottleneck adapters beside every MLP, without dispatchers (DyT's complete model)."""
from __future__ import annotations

from .base import Method, register_method
from .dyt import AdapterSettings, convert_with

register_method(Method("adaptformer", convert_with, AdapterSettings))
