"""The method registry and its contract: every method declares its settings class, `apply` receives that object
alone, and `--help-config` lists each method's settings under the methods that read them."""
import re
from dataclasses import dataclass, fields

import pytest
import timm

from dytune.methods import (METHODS, AdapterSettings, DyTSettings, LoRASettings, Method, MoESettings, NoSettings,
                            VPTSettings, build_objective, methods_reading, register_method)
from dytune.run_config import TrainConfig
from dytune.utils.settings import AT_LEAST_1, Settings, setting
from dytune.tasks import build_task

EXPECTED = {"dyt": DyTSettings, "dyt-nodistill": DyTSettings, "dyt-moe": MoESettings, "adaptformer": AdapterSettings,
            "lora": LoRASettings, "vpt": VPTSettings, "linear": NoSettings, "full": NoSettings}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_method_gets_its_own_settings_from_the_run_config(name):
    cfg = TrainConfig(method=name, bottleneck=4, experts=3, lora_rank=2, vpt_tokens=5, target_rate=0.7)
    settings = cfg.method_settings()
    assert type(settings) is EXPECTED[name] and METHODS[name].settings is EXPECTED[name]
    assert {f.name: getattr(settings, f.name) for f in fields(settings)} == {
        f.name: getattr(cfg, f.name) for f in fields(EXPECTED[name])}


def test_every_method_setting_is_a_run_config_key_and_help_groups_them_by_method():
    keys = set(TrainConfig.setting_names())  # plug-in methods' own settings included
    for method in METHODS.values():
        assert {f.name for f in fields(method.settings)} <= keys
    text = TrainConfig.help()
    assert "lora settings (lora):\n  lora_rank (an integer >= 1; default 8): " in text
    assert "moe settings (dyt-moe):\n  experts (" in text
    assert re.search(r"adapter settings \(dyt, dyt-nodistill, dyt-moe, adaptformer[^)]*\):\n  variant \(", text)
    assert text.index("run settings (every method):") == 0
    assert methods_reading(DyTSettings) == ["dyt", "dyt-nodistill", "dyt-moe"]


def test_settings_are_checked_on_their_own_too():
    with pytest.raises(ValueError, match=r"^lora_rank=0: expected an integer >= 1"):
        LoRASettings(lora_rank=0)
    with pytest.raises(ValueError, match=r"^experts='x': expected an integer >= 1"):
        MoESettings(experts="x")


def test_apply_reads_the_settings_object_alone():
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=3)
    METHODS["lora"].apply(model, LoRASettings(lora_rank=2))
    lora = [m for n, m in model.named_modules() if n.endswith("qkv")][0]
    assert any(p.shape[0] == 2 or p.shape[1] == 2 for p in lora.parameters() if p.requires_grad)
    moe = METHODS["dyt-moe"].settings(experts=3).dyt_config()
    assert moe.experts == 3 and DyTSettings().dyt_config().experts == 1
    assert AdapterSettings(bottleneck=4).dyt_config().layers == ()


def test_the_objective_reads_the_dynamic_settings():
    cfg = TrainConfig(method="dyt", target_rate=0.3, rate_weight=1.5, distill=False, dataset="fashion_mnist")
    objective = build_objective(METHODS["dyt"], build_task(cfg), cfg.method_settings())
    assert (objective.target_rate, objective.rate_weight, objective.distill) == (0.3, 1.5, False)


def test_distill_is_refused_for_a_method_without_a_dynamic_model():
    with pytest.raises(ValueError, match=r"distill=true: method 'adaptformer' has no dynamic model"):
        TrainConfig(method="adaptformer", distill=True)


@dataclass
class _RankSettings(Settings):
    group = "toy"
    rank: int = setting("A setting TrainConfig does not hold", 2, AT_LEAST_1)


def test_the_registry_refuses_mistakes():
    with pytest.raises(ValueError, match="already registered"):
        register_method(Method("dyt", lambda m, s: m))
    with pytest.raises(TypeError, match="settings must be a dytune.utils.settings.Settings dataclass"):
        Method("toy", lambda m, s: m, settings=dict)
    with pytest.raises(ValueError, match="a dynamic method's settings must extend DyTSettings"):
        Method("toy", lambda m, s: m, settings=LoRASettings, dynamic=True)
    with pytest.raises(ValueError, match="moe=True needs settings extending MoESettings"):
        Method("toy", lambda m, s: m, settings=DyTSettings, dynamic=True, moe=True)
    with pytest.raises(ValueError, match=r"_RankSettings: TrainConfig has no setting\(s\) \['rank'\]"):
        _RankSettings.pick(TrainConfig())
