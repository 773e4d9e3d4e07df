"""Packaging: each extra installs what its side imports; console scripts and
the images' file lists (docker/Dockerfile) match the packages.

Each extra: a fresh virtual environment (no system site-packages) gets the package with
only `[train]`, another with only `[serve]`; in each, every module of the
side's packages is imported, every module their code imports anywhere (also
inside functions: lazy imports such as the client's `--explain` pictures)
must be installed, and every console script of that side answers `--help`.

That test is slow (two installs of TensorFlow); `make test` runs it,
`make test-fast` does not.
"""

import configparser
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Packages whose code each side runs (keras_classreg, cliutil and clipspec come with
# both); console scripts are assigned to a side by their module's package.
SIDES = {
    "train": {
        "packages": ("keras_classreg", "cliutil", "clipspec", "training"),
        "scripts_from": ("training",),
    },
    "serve": {
        "packages": ("keras_classreg", "cliutil", "clipspec", "serving"),
        "scripts_from": ("serving",),
    },
}

CHECK = r"""
import ast, importlib, importlib.util, pkgutil, sys

packages = sys.argv[1].split(",")
own = set(packages) | {"keras_classreg", "cliutil", "clipspec", "training", "serving", "demo"}
problems, modules = [], []
for package in packages:
    module = importlib.import_module(package)
    modules.append(module)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as error:  # noqa: BLE001 (reported below)
            problems.append(f"import {info.name}: {type(error).__name__}: {error}")
for module in modules:
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        continue
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in sys.stdlib_module_names:
                continue
            if top in own and top not in packages and top != "keras_classreg":
                problems.append(f"{module.__name__} imports {name}: another side's package")
                continue
            try:
                found = importlib.util.find_spec(name) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                problems.append(f"{module.__name__} (line {node.lineno}) imports {name}: "
                                "not installed")
print(f"checked {len(modules)} modules")
for problem in problems:
    print("PROBLEM", problem)
sys.exit(1 if problems else 0)
"""


def console_scripts():
    """`{name: "module:function"}` of setup.cfg's console scripts."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = {}
    for line in config["options.entry_points"]["console_scripts"].strip().splitlines():
        name, _, target = line.partition("=")
        scripts[name.strip()] = target.strip()
    return scripts


def side_scripts(extra):
    return {
        name: target
        for name, target in console_scripts().items()
        if target.split(".")[0].split(":")[0] in SIDES[extra]["scripts_from"]
    }


def test_every_console_script_belongs_to_a_side_or_needs_both():
    scripts = console_scripts()
    assigned = set(side_scripts("train")) | set(side_scripts("serve"))
    # The demo runs training and serving: it needs both extras (`[dev]` has them).
    both = {name for name, target in scripts.items() if target.startswith("demo.")}
    assert set(scripts) == assigned | both, set(scripts) - assigned - both
    assert side_scripts("train") and side_scripts("serve")


def packages():
    """The top-level packages setup.cfg installs."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    names = config["options.packages.find"]["include"].split()
    return sorted({name.split(".")[0] for name in names})


def test_console_scripts_point_at_functions_that_exist():
    import ast

    for name, target in console_scripts().items():
        module, _, function = target.partition(":")
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        assert path.is_file(), f"{name}: no module {module}"
        tree = ast.parse(path.read_text())
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        defined |= {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert function in defined, f"{name}: {module} has no {function}()"


def _stage_copies(dockerfile, stage):
    """The packages a stage of docker/Dockerfile (and the stages it builds
    on, in this file) copies into /src."""
    copied, current, parents = {}, None, {}
    for line in dockerfile.splitlines():
        words = line.split()
        if words[:1] == ["FROM"] and "AS" in words:
            current = words[words.index("AS") + 1]
            parents[current] = words[1]
            copied[current] = set()
        elif words[:1] == ["COPY"] and len(words) == 3 and words[2].startswith("/src/"):
            copied[current].add(words[1].rstrip("/"))
    found = set()
    while stage in copied:
        found |= copied[stage]
        stage = parents[stage]
    return found


def test_images_copy_their_side_of_the_packages():
    # The train image gets every package, the model server the serve side's.
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert _stage_copies(dockerfile, "train-build") >= set(packages())
    assert _stage_copies(dockerfile, "model-server-build") == set(SIDES["serve"]["packages"])
    for package in packages():
        assert f"!{package}/" in ignore, package


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} exited {result.returncode}:\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("extra", sorted(SIDES))
def test_extra_installs_what_its_side_imports(extra, tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env=env)  # no system site-packages
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    _run(
        [str(python), "-m", "pip", "install", "--quiet", f"{ROOT}[{extra}]"],
        env=env,
        cwd=tmp_path,
        timeout=1500,
    )
    # Only this extra: the other side's own dependencies are absent.
    other_only = {"train": "waitress", "serve": "yaml"}[extra]
    absent = subprocess.run(
        [str(python), "-c", f"import {other_only}"], env=env, cwd=tmp_path, capture_output=True
    )
    assert absent.returncode != 0, f"{other_only} is installed with only [{extra}]"

    check = _run(
        [str(python), "-c", CHECK, ",".join(SIDES[extra]["packages"])],
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert "checked" in check.stdout
    for name in side_scripts(extra):
        result = _run([str(bin_dir / name), "--help"], env=env, cwd=tmp_path, timeout=300)
        assert "usage:" in result.stdout, (name, result.stdout[-2000:])
