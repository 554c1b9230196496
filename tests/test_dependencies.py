"""Dependencies point down: the engine and the benchmark both build on the core and the tasks; neither imports the
other (checked in a fresh interpreter, so that no other test's imports hide an edge)."""
import subprocess
import sys

import pytest

CASES = {
    "dytune.bench": ["dytune.bench.cli", "dytune.bench.runner", "dytune.bench.accuracy"],
    "dytune.engine": ["dytune.engine", "dytune.engine.cli", "dytune.engine.suite", "dytune.engine.predict"],
}
FORBIDDEN = {"dytune.bench": "dytune.engine", "dytune.engine": "dytune.bench"}


@pytest.mark.parametrize("package", sorted(CASES))
def test_a_layer_does_not_import_its_sibling(package):
    code = ("import importlib, sys\n"
            f"for name in {CASES[package]!r}:\n"
            "    importlib.import_module(name)\n"
            f"print(sorted(m for m in sys.modules if m.startswith({FORBIDDEN[package]!r})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{package} imports {out.strip()}"
