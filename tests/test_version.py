"""One version number: setup.cfg's, read from the installed distribution's
metadata by the library and the model server."""

import ast
import configparser
import importlib.metadata
import pathlib
import re

import keras_classreg

ROOT = pathlib.Path(__file__).resolve().parents[1]
OURS = ("keras_classreg", "cliutil", "clipspec", "training", "serving", "demo", "benchmarks")


def test_the_library_reports_the_installed_distribution_version():
    assert keras_classreg.__version__ == importlib.metadata.version("keras-classreg")


def test_setup_cfg_is_the_only_place_the_number_is_written():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["version"].count(".") == 2
    written = []
    for package in OURS:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Assign) and any(
                    "version" in ast.unparse(target).lower() for target in node.targets
                ):
                    value = node.value
                    if isinstance(value, ast.Constant) and re.fullmatch(
                        r"\d+\.\d+\.\d+", str(value.value)
                    ):
                        written.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not written, written


def test_model_server_version_names_the_same_number():
    from serving.server import version_lines

    lines = version_lines().splitlines()
    assert lines[0].startswith("TensorFlow ModelServer: classreg-model-server ")
    assert f" {keras_classreg.__version__} " in lines[0]
    assert lines[1].startswith("TensorFlow Library: 2.")
