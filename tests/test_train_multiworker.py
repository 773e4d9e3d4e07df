"""Two worker processes on 127.0.0.1 (`TF_CONFIG`, MultiWorkerMirroredStrategy)
run one short epoch and end with the same weights; the Keras bug that the
multi-worker patch works around is still there (this fails once Keras fixes
it, so that the patch can go); TF_CONFIG errors are explained."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from test_train_support import (
    REPO,
    free_ports,
    subprocess_env,
    tiny_config,
    train_command,
)

import keras_classreg  # noqa: F401  (registers the layer and model)
from training import distribute

# Two worker processes training together.
pytestmark = pytest.mark.slow


def test_two_workers_finish_an_epoch_with_identical_weights(prepared_data, tmp_path):
    run_dir = str(tmp_path / "run")
    command = train_command(tiny_config(prepared_data, run_dir, epochs=1, verbose=2))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                env=subprocess_env(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=300)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-4000:]

    chief = os.path.join(run_dir, "final.keras")
    other = os.path.join(run_dir, "workers", "worker-1", "final.keras")
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["num_workers"] == 2 and config["num_replicas"] == 2
    # only the chief writes the run's history, checkpoints and best model
    assert os.path.isfile(os.path.join(run_dir, "history.csv"))
    assert not os.path.exists(os.path.join(run_dir, "workers", "worker-1", "history.csv"))
    a = keras.saving.load_model(chief, compile=False)
    b = keras.saving.load_model(other, compile=False)
    assert len(a.weights) == len(b.weights) == 14
    for wa, wb in zip(a.weights, b.weights):
        assert wa.path == wb.path
        np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=wa.path)
    # and they trained: BatchNorm's moving mean starts at zero
    assert "run finished" in outputs[0] and "run finished" not in outputs[1]
    moving_mean = a.get_layer("stage1_bn").moving_mean.numpy()
    assert np.abs(moving_mean).max() > 1e-3
    rows = open(os.path.join(run_dir, "history.csv")).read().splitlines()
    assert len(rows) == 2 and rows[1].startswith("1,")


# Plain Keras: fit a small model on random data under MultiWorkerMirroredStrategy,
# without this project's patch.
_UNPATCHED_FIT = textwrap.dedent("""
    import numpy as np, tensorflow as tf, keras
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile("sgd", "mse")
    data = tf.data.Dataset.from_tensor_slices(
        (np.ones((16, 4), "float32"), np.ones((16, 2), "float32"))).batch(4)
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    print("FIT OK")
""")


@pytest.mark.slow
def test_installed_keras_still_needs_the_multi_worker_patch(tmp_path):
    """keras-team/keras#20585: plain `fit` fails under two workers. When this
    test fails, Keras fixed it: drop `patch_multi_worker_build` (and its gate
    `LAST_KERAS_NEEDING_MULTI_WORKER_PATCH`)."""
    assert distribute.keras_needs_multi_worker_patch(), (
        f"Keras {keras.version()} is newer than the last release known to need "
        "the multi-worker patch; this test checks whether it still does."
    )
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _UNPATCHED_FIT],
            cwd=tmp_path,
            env=subprocess_env(
                TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    known = (
        "Attempt to convert a value (PerReplica",
        "Invalid reduction dimension 0 for input with 0 dimensions",
    )
    assert all(w.returncode != 0 for w in workers), (
        f"Keras {keras.version()} fits under MultiWorkerMirroredStrategy without "
        "the patch: keras-team/keras#20585 is fixed; remove "
        "training.distribute.patch_multi_worker_build.\n" + outputs[0][-2000:]
    )
    assert any(any(k in output for k in known) for output in outputs), outputs[0][-3000:]


def test_multi_worker_patch_gate_by_version():
    assert distribute.keras_needs_multi_worker_patch("3.15.1")
    assert distribute.keras_needs_multi_worker_patch("3.2.0")
    assert not distribute.keras_needs_multi_worker_patch("3.16.0")
    assert not distribute.keras_needs_multi_worker_patch("4.0.0")


def test_tf_config_errors_name_the_problem(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG environment variable is not valid"):
        distribute.worker_role()
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 5}}),
    )
    with pytest.raises(ValueError, match="names task worker:5, which is not in its cluster"):
        distribute.worker_role()
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {
                "cluster": {"chief": ["a:1"], "worker": ["b:2"]},
                "task": {"type": "worker", "index": 0},
            }
        ),
    )
    assert distribute.worker_role() == ("worker", 0, False)
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}),
    )
    assert distribute.worker_role() == ("worker", 0, True)
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.worker_role() == ("chief", 0, True)
