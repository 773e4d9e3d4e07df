"""Files written whole or not at all (`cliutil.atomic`): one temporary-name
scheme for every writer, and the clean-ups remove what a killed writer
leaves."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

import cliutil
from clipspec.rundir import RunDir
from cliutil import atomic

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_partial_names_keep_folder_and_suffix_and_differ_per_attempt(tmp_path):
    first, second = (
        atomic.partial_path(tmp_path / "best.keras"),
        atomic.partial_path(tmp_path / "best.keras"),
    )
    assert first != second and first.parent == tmp_path
    assert first.name.startswith(".partial-") and first.name.endswith("-best.keras")
    assert atomic.is_partial(first) and not atomic.is_partial(tmp_path / "best.keras")
    assert isinstance(atomic.partial_path(str(tmp_path / "a")), str)
    assert atomic.partial_path("gs://bucket/k400/m.json").startswith("gs://bucket/k400/.partial-")


def test_an_error_inside_leaves_neither_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "config.json"
    cliutil.write_json(path, {"v": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(path) as partial:
            pathlib.Path(partial).write_text("half")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert cliutil.read_json(path) == {"v": 1}


def test_a_killed_writer_leaves_a_partial_file_that_the_run_cleanup_removes(tmp_path):
    """SIGKILL mid-write: `history.csv` is untouched, the temporary file is
    left, and `RunDir.remove_partial_files` (run at every resume) removes
    it."""
    (tmp_path / "history.csv").write_text("epoch\n1\n")
    writer = (
        "import sys, time, cliutil\n"
        "with cliutil.atomic_path(sys.argv[1]) as partial:\n"
        "    open(partial, 'w').write('epoch\\n1\\n2')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(120)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", writer, str(tmp_path / "history.csv")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline() == "writing\n"
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "history.csv")
    assert len(left) == 1 and atomic.is_partial(left[0]) and left[0].endswith("-history.csv")
    assert (tmp_path / "history.csv").read_text() == "epoch\n1\n"
    assert RunDir(tmp_path).remove_partial_files() == left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


def test_the_run_directory_writers_use_the_one_scheme(tmp_path, monkeypatch):
    """The history CSV (`training.callbacks`) and the run directory's JSON
    files go through `cliutil.atomic_path`, so a killed writer's file is
    one the clean-up knows."""
    from training import callbacks

    made = []
    real = atomic.partial_path
    monkeypatch.setattr(atomic, "partial_path", lambda path: made.append(real(path)) or made[-1])
    callbacks._write_history(str(tmp_path / "history.csv"), [{"epoch": 1, "loss": 0.5}])
    RunDir(tmp_path).write_config({"clip_length": 4})
    RunDir(tmp_path).write_summary({"epochs": 1})
    names = [os.path.basename(os.fspath(path)) for path in made]
    assert [name.split("-", 2)[2] for name in names] == [
        "history.csv",
        "config.json",
        "summary.json",
    ]
    assert all(atomic.is_partial(name) for name in names)
    assert callbacks.read_history(str(tmp_path / "history.csv")) == [{"epoch": 1, "loss": 0.5}]


# Renames outside `cliutil.atomic.atomic_path`, each with its reason.
RENAMES_ELSEWHERE = {
    # Keras's ModelCheckpoint writes the improved model under a
    # `cliutil.partial_path` name; the callback renames it.
    "training/callbacks.py",
    # `rename` for `atomic_path` on `tf.io.gfile` filesystems.
    "training/data/output_folder.py",
    # The soak benchmark copies a version folder in as a deployment does.
    "benchmarks/serving_soak.py",
}


def test_write_then_rename_lives_in_one_helper():
    found = set()
    for package in ("keras_classreg", "clipspec", "training", "serving", "demo", "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                    "os.replace",
                    "os.rename",
                    "tf.io.gfile.rename",
                ):
                    found.add(str(path.relative_to(ROOT)))
    assert found == RENAMES_ELSEWHERE, sorted(found ^ RENAMES_ELSEWHERE)
