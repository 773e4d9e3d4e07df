"""The README and docs/ say what the code does: links resolve, every
`python -m` command names a module of this repository, its flags exist, the
README fits on a screen, and its Keras example runs."""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
OURS = ("keras_classreg", "cliutil", "clipspec", "training", "serving", "demo", "benchmarks")
README_MAX_LINES = 200


def _text(page):
    return page.read_text(encoding="utf-8")


def _fences(text):
    """(language, body) of each fenced code block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def _slug(heading):
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page):
    text = re.sub(r"^```.*?^```", "", _text(page), flags=re.M | re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_readme_fits_on_a_screen():
    lines = _text(ROOT / "README.md").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    text = re.sub(r"^```.*?^```", "", _text(page), flags=re.M | re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            # Pages written by the benchmarks (docs/benchmarks/*.md) appear
            # when the lead runs them; everything else must exist.
            if file.parent == ROOT / "docs" / "benchmarks" and file.suffix in (
                ".md",
                ".png",
                ".json",
            ):
                continue
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, broken


def _commands(text):
    """`python -m MODULE args...` command lines in code blocks and code spans
    (continuation lines joined; up to a shell operator or comment)."""
    chunks = [body for language, body in _fences(text) if language in ("", "bash", "sh")]
    chunks += re.findall(r"`([^`\n]*python -m [^`\n]*)`", text)
    commands = []
    for chunk in chunks:
        chunk = chunk.replace("\\\n", " ")
        for match in re.finditer(r"python -m ((?:\w+\.)*\w+)(?![\w.<])([^\n#&|;]*)", chunk):
            commands.append((match.group(1), _words(match.group(2))))
    return commands


def _words(args):
    """A command's words as a shell splits them; a quoted value holding
    spaces (`--beam-options "--runner=... --project=..."`, another
    program's options) is left out, since its words are not this
    command's flags."""
    try:
        words = shlex.split(args)
    except ValueError:  # an unbalanced quote in prose: plain words
        words = args.split()
    return [word for word in words if not re.search(r"\s", word)]


def _module_file(module):
    base = ROOT / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__main__.py"):
        if path.is_file():
            return path
    return None


def _our_commands():
    found = {}
    for page in PAGES:
        for module, args in _commands(_text(page)):
            if module.split(".")[0] in OURS:
                found.setdefault(module, []).append((page.relative_to(ROOT), args))
    return found


def test_python_m_commands_name_modules_of_this_repository():
    found = _our_commands()
    assert "demo" in found and "training.train" in found and "serving.server" in found
    missing = sorted(
        f"{module} (in {pages[0][0]})"
        for module, pages in found.items()
        if _module_file(module) is None
    )
    assert not missing, f"python -m of modules that do not exist: {missing}"


def test_no_old_paths_in_the_docs():
    old = [
        "python -m training.demo",
        "python benchmarks/",
        "training/viz.py",
        "training.data.decode",
        "training/demo.py",
        "--model-base-path",
        "--model-name ",
        "--max-batch-size",
        "keras_classreg.explain(",
        "training/export.py",
        "serving/models.py",
        "serving.models",
    ]
    found = [
        (str(page.relative_to(ROOT)), text)
        for page in PAGES
        for text in old
        if text in _text(page) and page.name not in ("reproduction.md",)
    ]  # the previous study's record
    assert not found, found


# Prints `{module: its --help text}` as JSON: every command line's
# `python -m MODULE --help`, run in one process (TensorFlow, which some of
# them import, then starts once instead of once per module).
_HELP_TEXTS = r"""
import contextlib, io, json, runpy, sys, warnings

# runpy warns that a package's __init__ imported the module it is asked to run
warnings.filterwarnings("ignore", "found in sys.modules", RuntimeWarning)
texts = {}
for module in sys.argv[1:]:
    out = io.StringIO()
    sys.argv = [module, "--help"]
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit:
            pass
    texts[module] = out.getvalue()
print(json.dumps(texts))
"""


@pytest.mark.slow
def test_python_m_flags_exist():
    """Every `--flag` of a documented `python -m` command appears in that
    command's `--help`."""
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    flags_of = {}
    for module, uses in sorted(_our_commands().items()):
        flags = {
            arg.split("=")[0].rstrip(").,;:`'\"")
            for _, args in uses
            for arg in args
            if arg.startswith("--") and len(arg) > 2
        }
        if flags:
            flags_of[module] = flags
    result = subprocess.run(
        [sys.executable, "-c", _HELP_TEXTS, *flags_of],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    help_texts = json.loads(result.stdout.strip().splitlines()[-1])
    unknown = []
    for module, flags in flags_of.items():
        help_text = help_texts[module]
        assert "usage:" in help_text, (module, help_text[-2000:])
        unknown += [
            f"python -m {module} {flag}"
            for flag in sorted(flags)
            if not re.search(re.escape(flag) + r"(?![\w-])", help_text)
        ]
    assert not unknown, unknown


@pytest.mark.slow
def test_readme_keras_example_runs(tmp_path):
    python = [body for language, body in _fences(_text(ROOT / "README.md")) if language == "python"]
    assert len(python) == 1, "README.md should hold one Python example"
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    result = subprocess.run(
        [sys.executable, "-c", python[0]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "stage4_classreg" in result.stdout and "GFLOPs per clip" in result.stdout
    assert (tmp_path / "model.keras").is_file()
