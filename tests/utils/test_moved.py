import importlib
import sys
import warnings

import pytest

import dytune
from dytune.utils.moved import MOVED, new_name


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_imports_the_module_at_its_new_home_with_a_warning(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])


def test_a_module_under_a_moved_package_moves_with_it():
    assert new_name("dytune.modules.tokens") == "dytune.core.modules.tokens"
    assert new_name("dytune.modules.video") == "dytune.tasks.video.model"  # the longest moved prefix decides
    assert new_name("dytune.engine.trainer") is None
    sys.modules.pop("dytune.modules.tokens", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from dytune.modules.tokens import bucketed
    from dytune.core.modules.tokens import bucketed as at_home
    assert bucketed is at_home


def test_the_public_functions_keep_their_names():
    # dytune.convert and dytune.calibrate are functions of the package root, not aliases of their old modules
    assert callable(dytune.convert) and callable(dytune.calibrate)
    assert "dytune.convert" not in MOVED and "dytune.calibrate" not in MOVED
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("dytune.nonexistent")
