"""The package's layout: layers import only the layers below them, and no module imports itself back.

Every import is read from the source, those inside functions too, so a lazy
import counts as much as one at the top of a file.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "objectness"

# Lowest first. A module may import its own layer's modules and those of lower layers.
LAYERS = [
    {"_version", "files", "config"},
    {"device", "visualize"},
    {"data"},
    {"model"},
    {"objectives"},
    {"inference"},
    {"training"},
    {"evaluation", "semantic"},
    {"tools"},
    {"cli"},
    {""},  # objectness/__init__.py: the public API
]
MAX_TOP_LEVEL_MODULES = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set:
    """The objectness modules ``path`` imports (dotted, relative to the package)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
            elif node.module and (node.module == "objectness" or node.module.startswith("objectness.")):
                base, node = [], ast.ImportFrom(module=node.module[len("objectness"):].lstrip(".") or None,
                                                names=node.names, level=0)
            else:
                continue
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                candidate = ".".join(target + [alias.name])
                modules.add(candidate if candidate in ALL_MODULES else ".".join(target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("objectness."):
                    modules.add(alias.name[len("objectness."):])
    return modules - {name}


ALL_MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imported_modules(p) for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    top = module.split(".")[0]
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"objectness.{module} belongs to no layer of tests/test_layout.py")


def test_every_module_belongs_to_a_layer():
    for module in GRAPH:
        layer(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_no_higher_layer(module):
    higher = [m for m in GRAPH[module] if layer(m) > layer(module)]
    assert not higher, f"objectness.{module} imports a higher layer: {', '.join(sorted(higher))}"


def test_no_import_cycle():
    """Depth-first search over the module graph; a module reached again on its own path is a cycle."""
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for other in sorted(GRAPH.get(module, ())):
            if state.get(other) == "open":
                cycles.append(" -> ".join(path[path.index(other):] + [other]))
            elif other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    monkeypatch.setitem(GRAPH, "model.amd", GRAPH["model.amd"] | {"training.train"})
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycle()


def test_the_top_level_holds_few_modules():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules
