"""Imports flow one way (docs/architecture.md): {keras_classreg, cliutil} ←
clipspec ← {training, serving} ← {demo, benchmarks, tests}; training and
serving never import each other. Every import statement counts, also one inside a
function (a lazy import is still a dependency)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
OURS = (
    "keras_classreg",
    "cliutil",
    "clipspec",
    "training",
    "serving",
    "demo",
    "benchmarks",
    "tests",
)

# package -> the other packages of ours it may import
ALLOWED = {
    "keras_classreg": {"cliutil"},
    "cliutil": set(),
    "clipspec": {"keras_classreg", "cliutil"},
    "training": {"keras_classreg", "cliutil", "clipspec"},
    "serving": {"keras_classreg", "cliutil", "clipspec"},
    "demo": {"keras_classreg", "cliutil", "clipspec", "training", "serving"},
    "benchmarks": {"keras_classreg", "cliutil", "clipspec", "training", "serving"},
}


def imports_of(package):
    """`(file, line, module)` of every absolute import of ours in `package`."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in OURS and top != package:
                    found.append((str(path.relative_to(ROOT)), node.lineno, name))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package):
    wrong = [
        f"{file}:{line} imports {name}"
        for file, line, name in imports_of(package)
        if name.split(".")[0] not in ALLOWED[package]
    ]
    assert not wrong, (
        f"{package} may import only {sorted(ALLOWED[package]) or 'nothing of ours'}:\n"
        + "\n".join(wrong)
    )


def test_the_library_has_no_command_line():
    for path in (ROOT / "keras_classreg").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "argparse" not in text and "__main__" not in text, path


def test_imports_of_finds_lazy_imports(tmp_path, monkeypatch):
    # The checker itself: an import inside a function is found.
    package = tmp_path / "serving"
    package.mkdir()
    (package / "x.py").write_text("def f():\n    from training import data\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert imports_of("serving") == [("serving/x.py", 2, "training")]


def _lazy_tables():
    """`(file, {name: module} of its lazy_exports table, {name: module} of its
    TYPE_CHECKING imports)` for every module that calls `lazy_exports`."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "__init__.py" or "lazy_exports(" not in text:
            continue
        table, checked = {}, {}
        for node in ast.parse(text).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                if [t.id for t in node.targets if isinstance(t, ast.Name)] == ["_LAZY"]:
                    table = {k.value: v.value for k, v in zip(node.value.keys, node.value.values)}
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.ImportFrom):
                        checked.update({alias.name: sub.module for alias in sub.names})
        found.append((str(path.relative_to(ROOT)), table, checked))
    return found


def test_lazy_exports_are_named_for_tools():
    """A package attribute imported on first use (`cliutil.lazy`) is also
    imported under `typing.TYPE_CHECKING`, from the same module, so that
    type checkers, IDEs and import graphs follow it."""
    tables = _lazy_tables()
    assert tables, "no module uses cliutil.lazy.lazy_exports any more: drop this test"
    for file, table, checked in tables:
        assert table and table == checked, (file, table, checked)


def test_no_module_level_import_hidden_in_a_string():
    """Imports are statements, never `importlib.import_module("...")` or a
    lazy-module stand-in at module level (tools cannot follow those)."""
    wrong = []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                    call = ast.unparse(node.value.func)
                    if call.endswith(("import_module", "lazy_import", "__import__")):
                        wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not wrong, wrong


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph():
    """`{module: {modules of ours it imports}}`, every import statement
    counted (also one inside a function). `from pkg import name` is an edge
    to the submodule `pkg.name` when there is one, else to `pkg`."""
    files = {
        _module_name(path): path for package in ALLOWED for path in (ROOT / package).rglob("*.py")
    }

    def ours(name):
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = (
                    node.module if not node.level else ".".join(filter(None, (base, node.module)))
                )
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source
                    for alias in node.names
                ]
            else:
                continue
            edges.update(ours(target) for target in targets)
        graph[module] = edges - {module, ""}
    return graph


def import_circles(graph):
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = set()
            while not group or node not in group:
                group.add(stack.pop())
            on_stack.difference_update(group)
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circles():
    """No module of ours imports, even lazily inside a function, a module
    that imports it back (directly or around a longer circle)."""
    assert import_circles(module_graph()) == []


def test_import_circles_are_found():
    # The checker itself: a circle through a lazy import, and none without it.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]
    assert import_circles({**graph, "c": set()}) == []
