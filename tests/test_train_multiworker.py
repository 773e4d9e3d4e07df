"""Two worker processes on 127.0.0.1 (`TF_CONFIG`, MultiWorkerMirroredStrategy)
run one short epoch and end with the same weights."""

import json
import os
import subprocess

import numpy as np
import keras
import pytest

import keras_classreg  # noqa: F401  (registers the layer and model)

from test_train_support import (  # noqa: F401
    REPO,
    free_ports,
    prepared_data,
    subprocess_env,
    tiny_config,
    train_command,
)


# Two worker processes training together.
pytestmark = pytest.mark.slow


def test_two_workers_finish_an_epoch_with_identical_weights(prepared_data, tmp_path):  # noqa: F811
    run_dir = str(tmp_path / "run")
    command = train_command(tiny_config(prepared_data, run_dir, epochs=1,
                                        verbose=2))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster,
                                "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen(
            command, cwd=REPO, env=subprocess_env(TF_CONFIG=tf_config),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
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
    assert not os.path.exists(os.path.join(run_dir, "workers", "worker-1",
                                           "history.csv"))
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
