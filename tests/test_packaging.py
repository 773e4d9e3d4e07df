"""Packaging: each extra installs what its side imports; console scripts and
the images' file lists (docker/Dockerfile) match the packages.

Each extra (`train`, `serve`) gets an environment holding exactly what `pip
install ".[EXTRA]"` installs: the package built as a wheel and installed
(console scripts included) into a fresh virtual environment without pip or
system site-packages, plus the extra's whole dependency closure, read from
the package's own metadata (`Requires-Dist` with the extra's markers) and
then each dependency's, linked in file by file from the test's own
environment, whose installed versions must satisfy every requirement on the
way (so a consistent set exists, as pip's resolver would need). Nothing
else is visible there. In it, every module of the side's packages is
imported, every module their code imports anywhere (also inside functions:
lazy imports such as the client's `--explain` pictures) must be installed,
the other side's own dependencies must be absent, and every console script
of that side answers `--help`. An import that belongs to an option with an
extra of its own (`prepare --runner beam`: `[beam]`) must be in that extra
instead.

The versions are this environment's (what `make install` resolved), not
the newest on the index; no TensorFlow is downloaded or unpacked, so the
check runs offline in well under a minute (`make test`; not `make
test-fast`).
"""

import configparser
import os
import pathlib
import shutil
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
        # imported by the code of an option that its own extra installs
        # (`prepare --runner beam`: [beam]); checked to be in that extra
        "optional": {"apache_beam": ("beam", "apache-beam")},
    },
    "serve": {
        "packages": ("keras_classreg", "cliutil", "clipspec", "serving"),
        "scripts_from": ("serving",),
        "optional": {},
    },
}

CHECK = r"""
import ast, importlib, importlib.util, pkgutil, sys

packages = sys.argv[1].split(",")
optional = set(filter(None, sys.argv[2].split(",")))  # another extra of this side installs them
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
            if top in sys.stdlib_module_names or top in optional:
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


def _clean_env():
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _dependency_closure(requirements, extra):
    """`{canonical name: Distribution}` of this environment's installed
    distributions that `requirements` (strings, `Requires-Dist` lines) pull
    in for `extra`, recursively; asserts each is installed in a version the
    requirement allows."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found, pending = {}, [(line, {"extra": extra}, "keras-classreg") for line in requirements]
    while pending:
        line, environment, wanted_by = pending.pop()
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{requirement} (needed by {wanted_by} [{extra}]) is not installed here")
        assert requirement.specifier.contains(dist.version, prereleases=True), (
            f"{wanted_by} needs {requirement}, installed: {dist.version}"
        )
        if name in found:
            continue
        found[name] = dist
        for sub_extra in ("", *requirement.extras):
            pending += [(r, {"extra": sub_extra}, name) for r in dist.requires or ()]
    return found


def _site_files(dist):
    """`(site-packages folder, [paths relative to it])` of the files `dist`
    installed there (scripts and data outside it are not needed here)."""
    root = os.path.normpath(str(dist.locate_file("")))
    files = []
    for entry in dist.files or ():
        path = os.path.normpath(os.path.join(root, str(entry)))
        if path.startswith(root + os.sep):
            files.append(os.path.relpath(path, root))
    return root, files


def _link_distributions(closure, site_packages):
    """Makes the distributions of `closure` visible in `site_packages`, and
    only them: a top-level folder that holds files of no other installed
    distribution is linked whole, any other path file by file."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    owners = {}  # top-level name -> distributions with files under it
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for relative in _site_files(dist)[1]:
            owners.setdefault(relative.split(os.sep)[0], set()).add(name)
    wanted = set(closure)
    for dist in closure.values():
        root, files = _site_files(dist)
        for relative in files:
            top = relative.split(os.sep)[0]
            whole = owners.get(top, set()) <= wanted and os.path.isdir(os.path.join(root, top))
            relative = top if whole else relative
            target = site_packages / relative
            if os.path.lexists(target) or not os.path.exists(os.path.join(root, relative)):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.path.join(root, relative))


@pytest.fixture(scope="module")
def package_wheel(tmp_path_factory):
    """The project built as a wheel (from a copy of the tree, so that the
    build leaves nothing in the repository)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in packages():
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    _run(
        [
            sys.executable,
            *("-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--wheel-dir", str(folder / "dist"), str(source)),
        ],
        env=_clean_env(),
        cwd=folder,
        timeout=300,
    )
    (wheel,) = (folder / "dist").glob("keras_classreg-*.whl")
    return wheel


@pytest.mark.slow
@pytest.mark.parametrize("extra", sorted(SIDES))
def test_extra_installs_what_its_side_imports(extra, package_wheel, tmp_path):
    from importlib import metadata

    from packaging.requirements import Requirement

    env = _clean_env()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], env=env)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    _run(
        [
            sys.executable,
            *("-m", "pip", "--python", str(python), "install", "--quiet"),
            *("--no-deps", "--no-index", str(package_wheel)),
        ],
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    site_packages = pathlib.Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            env=env,
        ).stdout.strip()
    )
    (installed,) = metadata.distributions(name="keras-classreg", path=[str(site_packages)])
    closure = _dependency_closure(installed.requires or (), extra)
    assert "tensorflow" in closure and "keras-classreg" not in closure
    _link_distributions(closure, site_packages)

    # Only this extra: the other side's own dependencies are absent.
    other_only = {"train": "waitress", "serve": "yaml"}[extra]
    absent = subprocess.run(
        [str(python), "-c", f"import {other_only}"], env=env, cwd=tmp_path, capture_output=True
    )
    assert absent.returncode != 0, f"{other_only} is installed with only [{extra}]"

    optional = SIDES[extra]["optional"]
    for module, (optional_extra, distribution) in optional.items():
        assert any(
            Requirement(line).name == distribution
            and Requirement(line).marker is not None
            and Requirement(line).marker.evaluate({"extra": optional_extra})
            for line in installed.requires or ()
        ), f"{module}: {distribution} is not in the [{optional_extra}] extra"
    check = _run(
        [str(python), "-c", CHECK, ",".join(SIDES[extra]["packages"]), ",".join(optional)],
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert "checked" in check.stdout
    for name in side_scripts(extra):
        result = _run([str(bin_dir / name), "--help"], env=env, cwd=tmp_path, timeout=300)
        assert "usage:" in result.stdout, (name, result.stdout[-2000:])
