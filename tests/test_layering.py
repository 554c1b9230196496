"""Dependencies point down: every import statement of the package, at module level or inside a function, goes from a
layer to the same or a lower one, and the engine and the benchmark (siblings) never import each other."""
import ast
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dytune"

# Lowest first; a module belongs to the entry with the longest matching prefix. Entries of one rank are siblings.
LAYERS: List[Tuple[int, str, Tuple[str, ...]]] = [
    (0, "utils", ("dytune.utils", "dytune.version")),
    (1, "backbones", ("dytune.backbones",)),
    (2, "core", ("dytune.core",)),
    (3, "shared task parts", ("dytune.data", "dytune.viz", "dytune.pretrained", "dytune.models")),
    (4, "tasks", ("dytune.tasks",)),
    (5, "methods and run settings", ("dytune.methods", "dytune.run_config")),
    (6, "engine", ("dytune.engine",)),
    (6, "bench", ("dytune.bench",)),
    (7, "applications", ("dytune.mini", "dytune.export")),
    (8, "command line", ("dytune.cli", "dytune.__main__")),
    (9, "public API", ("dytune",)),
]


def layer_of(module: str) -> Optional[Tuple[int, str]]:
    """(rank, name) of the layer that owns `module`: the entry with the longest prefix of it."""
    best = None
    for rank, name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank, name)
    return None if best is None else best[1:]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[Tuple[str, int]]:
    """(imported dytune module, line) of every import statement in `path`. `from X import a` imports X.a when a is
    a sub-module of X, else X."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "dytune")
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] != "dytune":
                continue
            for alias in node.names:
                yield (f"{target}.{alias.name}" if _is_module(f"{target}.{alias.name}") else target), node.lineno


def _is_module(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert [module_name(p) for p in MODULES if layer_of(module_name(p)) is None] == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_down(path):
    own = layer_of(module_name(path))
    upward = []
    for target, line in imports(path):
        other = layer_of(target)
        if other is None or target == "dytune" and own[1] == "public API":
            continue
        if other[0] > own[0] or (other[0] == own[0] and other[1] != own[1]):
            upward.append(f"line {line}: {target} ({other[1]}) from layer {own[1]}")
    assert upward == []


def test_the_layer_table_sees_imports_inside_functions():
    assert module_name(PACKAGE / "utils" / "io.py") == "dytune.utils.io"
    assert layer_of("dytune.cli.train") == (8, "command line") and layer_of("dytune.engine.trainer") == (6, "engine")
    assert layer_of("dytune.tasks.video.model") == (4, "tasks") and layer_of("dytune.core.modules.blocks") == (2, "core")
    assert layer_of("dytune.mini.demo") == (7, "applications") and layer_of("dytune.backbones.timm_vit") == (1, "backbones")
    assert layer_of("dytune") == (9, "public API") and layer_of("dytune_other") is None
    found = [target for target, _ in imports(PACKAGE / "cli" / "train.py")]
    assert "dytune.engine.trainer" in found  # imported inside run_train, not at module level


PACKAGES = sorted(p.parent for p in PACKAGE.rglob("__init__.py"))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: module_name(p / "__init__.py"))
def test_every_package_says_what_it_holds(package):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc.split()) >= 8, f"{package}: the package docstring should say what the package holds"
