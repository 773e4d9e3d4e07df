"""Imports flow one way (docs/architecture.md): keras_classreg ← clipspec ←
{training, serving} ← {demo, benchmarks, tests}; training and serving never
import each other. Every import statement counts, also one inside a
function (a lazy import is still a dependency)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
OURS = ("keras_classreg", "clipspec", "training", "serving", "demo", "benchmarks", "tests")

# package -> the other packages of ours it may import
ALLOWED = {
    "keras_classreg": set(),
    "clipspec": {"keras_classreg"},
    "training": {"keras_classreg", "clipspec"},
    "serving": {"keras_classreg", "clipspec"},
    "demo": {"keras_classreg", "clipspec", "training", "serving"},
    "benchmarks": {"keras_classreg", "clipspec", "training", "serving"},
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
