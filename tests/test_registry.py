"""The registries (model zoo, explanation methods, dataset layouts) have one
shape (`cliutil.registry.Registry`) and no import circle."""

import ast
import pathlib

import pytest

from cliutil.registry import Registry

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("keras_classreg", "cliutil", "clipspec", "training", "serving", "demo", "benchmarks")
REGISTRY_MODULES = (
    "cliutil.registry",
    "keras_classreg.models.registry",
    "keras_classreg.explanations.registry",
    "training.data.layouts.registry",
)


def test_lookup_suggests_the_closest_name_and_names_are_registered_once():
    colours = Registry("colour")
    colours.register("green", make_entry=str.upper)("green")
    colours.add("blue", "BLUE")
    assert colours.names() == ["blue", "green"] and colours.get("green") == "GREEN"
    with pytest.raises(ValueError, match=r"Unknown colour 'gren' \(did you mean 'green'\?\)"):
        colours.get("gren")
    with pytest.raises(ValueError, match=r"Unknown colour 'red'\. Expected one of: blue, green"):
        colours.get("red")
    with pytest.raises(ValueError, match="Colour 'blue' is already registered"):
        colours.add("blue", "navy")


def test_the_three_registries_have_the_one_shape():
    from keras_classreg.explanations import registry as methods
    from keras_classreg.models.registry import MODELS
    from training.data.layouts import registry as layouts

    assert {type(r) for r in (MODELS, methods._METHODS, layouts._LAYOUTS)} == {Registry}
    with pytest.raises(ValueError, match="did you mean 'resnet18_3d'"):
        MODELS.get("resnet19_3d")
    with pytest.raises(ValueError, match="did you mean 'class_evidence'"):
        methods.get("class_evidance")
    with pytest.raises(ValueError, match="did you mean 'ucf101'"):
        layouts.get("ucf100")


def _import_graph():
    """`{module: modules of ours it imports}` (imports in functions too)."""
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    imported.add(child if child in modules else node.module)
        graph[module] = {name for name in imported if name in modules and name != module}
    return graph


def _reaches(graph, start, goal):
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module == goal:
            return True
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return False


def test_no_registry_is_part_of_an_import_circle():
    graph = _import_graph()
    circles = [
        (registry, module)
        for registry in REGISTRY_MODULES
        for module in graph[registry]
        if _reaches(graph, module, registry)
    ]
    assert not circles, circles
