"""Helpers of the training tests (no tests here): a tiny 3D CNN with the
zoo builders' signature, small enough for CPU tests in seconds.

Used in-process and, as `tests/test_train_support.py:tiny_c3d`, by
`python -m training.train --model ...` subprocesses.
"""

import keras

from keras_classreg.models._common import (
    check_input_shape,
    class_regularization_block,
    conv_bn,
    head,
    make_classifier,
    resolve_affection_rates,
    use_synchronized_bn,
)

TINY_AFFECTION_RATES = (0.2, 0.4)


def tiny_c3d(
    num_classes,
    input_shape=(4, 32, 32, 3),
    class_regularization=True,
    affection_rates=None,
    dropout=0.0,
    classifier_activation="softmax",
    synchronized_batchnorm=None,
    class_regularization_options=None,
    widths=(16, 32),
):
    """Two conv-BN-ReLU stages (`widths` channels), a Class Regularization
    block after each, global pooling and the softmax `classifier`."""
    check_input_shape(input_shape, "tiny_c3d")
    rates = resolve_affection_rates(affection_rates, TINY_AFFECTION_RATES, "tiny_c3d")
    sync = use_synchronized_bn(synchronized_batchnorm)
    classifier = make_classifier(num_classes, widths[1], classifier_activation)
    inputs = keras.Input(shape=tuple(input_shape), name="clips")
    x = inputs
    for stage, (filters, strides) in enumerate(zip(widths, ((1, 2, 2), 2)), start=1):
        x = conv_bn(x, filters, 3, strides, f"stage{stage}", sync)
        if class_regularization:
            x = class_regularization_block(
                x,
                classifier,
                rates[stage - 1],
                f"stage{stage}_classreg",
                class_regularization_options,
            )
    return head(x, classifier, dropout, inputs, "tiny_c3d")


# --- shared fixtures (a plugin of tests/conftest.py: request them by name) --
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SPEC = os.path.join(REPO, "tests", "test_train_support.py") + ":tiny_c3d"
CLASSES = 4
PER_CLASS = 32  # 24 train + 8 test videos per class


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory):
    """A prepared synthetic motion dataset: 4 classes (down, left, right,
    up), 96 train / 32 test videos of 16 frames at 32x32."""
    from training.data import prepare_dataset, write_synthetic_dataset

    root = tmp_path_factory.mktemp("motion")
    dataset = write_synthetic_dataset(
        root / "videos",
        classes=CLASSES,
        per_class=PER_CLASS,
        frames=16,
        size=32,
        seed=0,
        test_fraction=0.25,
    )
    prepare_dataset(dataset, root / "prepared", short_side=32, workers=0, progress=False)
    return str(root / "prepared")


def tiny_config(data, run_dir, **overrides):
    """A `TrainConfig` dict for the tiny model on `prepared_data`.

    `xla=False`: the tests train tiny models many times, where compiling
    each run's steps costs more than it saves; `tests/test_train_xla.py`
    checks the default (compiled) path and passes `xla` itself."""
    config = dict(
        data=data,
        run_dir=str(run_dir),
        model=TINY_SPEC,
        clip_length=8,
        stride=2,
        crop_size=32,
        batch_size=8,
        epochs=2,
        learning_rate=0.1,
        flip=False,
        augmentation="center",
        verbose=0,
        xla=False,
    )
    config.update(overrides)
    return config


def cli_args(config):
    """`python -m training.train` flags for a config dict."""
    args = []
    for key, value in config.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return args


def train_command(config):
    return [sys.executable, "-m", "training.train", *cli_args(config)]


def subprocess_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run(command, **kwargs):
    return subprocess.run(
        command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, **kwargs
    )
