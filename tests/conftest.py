"""Shared test set-up: quiet TensorFlow, two logical CPU devices, fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf

from benchmarks import real_clips

# Two logical CPU devices, so MirroredStrategy has two replicas on CPU. This
# must happen before TensorFlow initialises its devices.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration()] * 2,
    )
except RuntimeError:  # devices already initialised by an earlier import
    pass

# Fixtures shared across modules (`prepared_data`): requested by name, never imported.
pytest_plugins = ["test_train_support"]


@pytest.fixture(scope="module", autouse=True)
def _release_models_after_each_module():
    """An xdist worker runs many test files in one process: drop Keras's
    global state and the models, traced functions and compiled XLA programs
    a file left behind, so that the worker's memory does not grow file by
    file (it reached 16 GB in one full run without this)."""
    yield
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


# `../shared/data/real-clips` beside the repository (or beside one of its
# parent folders, for a git worktree in a sub-folder).
REAL_CLIPS = real_clips.real_clips_dir()


@pytest.fixture(scope="session")
def real_clips_dir():
    """The shared real clips (HMDB-51/UCF-101/Kinetics); skip when absent."""
    if not (REAL_CLIPS / "labels.csv").is_file():
        pytest.skip(f"real clips not found at {REAL_CLIPS}")
    return REAL_CLIPS
