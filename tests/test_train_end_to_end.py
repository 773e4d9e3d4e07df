"""`train()` end to end on synthetic shards under MirroredStrategy (the two
logical CPU devices of conftest): it learns, writes the run directory,
refuses inconsistent resumes, and `--init-from` transfers weights by name."""

import json
import os

import keras
import numpy as np
import pytest
from test_train_support import tiny_config

import keras_classreg
from training import callbacks as run_callbacks
from training.evaluate import evaluate
from training.train import train

EPOCHS = 10


# Trainings (in subprocesses and under MirroredStrategy).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(prepared_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = tiny_config(prepared_data, run_dir, epochs=EPOCHS, seed=3)
    assert train(config) == str(run_dir)
    return config


def test_fit_learns_and_writes_the_run_directory(trained_run, prepared_data):
    run_dir = trained_run["run_dir"]
    for name in ("config.json", "best.keras", "final.keras", "history.csv", "summary.json"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert os.listdir(os.path.join(run_dir, "tensorboard"))
    # BackupAndRestore's state is removed once a run finishes
    assert not os.path.exists(os.path.join(run_dir, "backup"))
    checkpoints = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
    assert checkpoints == [f"epoch_{e:03d}.keras" for e in range(EPOCHS - 4, EPOCHS + 1)]

    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["model"] == trained_run["model"]
    assert config["input_shape"] == [8, 32, 32, 3]
    assert config["num_classes"] == 4
    assert config["class_names"] == ["down", "left", "right", "up"]
    assert config["clip_length"] == 8 and config["stride"] == 2
    assert config["class_regularization"] is True
    assert config["affection_rates"] is None
    assert len(config["mean"]) == 3 and len(config["std"]) == 3
    assert config["num_replicas"] == 2 and config["num_workers"] == 1
    assert config["steps_per_epoch_resolved"] == 96 // 8
    assert config["momentum"] == 0.9 and config["lr_schedule"] == "cosine"

    rows = run_callbacks.read_history(os.path.join(run_dir, "history.csv"))
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    assert rows[-1]["loss"] < rows[0]["loss"]
    # the run's best model is clearly better than chance (0.25) on videos
    # it never saw, scored from 3 clips per video
    report = evaluate(
        os.path.join(run_dir, "best.keras"), prepared_data, num_clips=3, progress=False
    )
    assert report["video"]["count"] == 32 and report["clip"]["count"] == 96
    assert report["video"]["top1"] >= 0.5, report["video"]


def test_best_model_is_the_best_validation_epoch(trained_run, prepared_data):
    run_dir = trained_run["run_dir"]
    rows = run_callbacks.read_history(os.path.join(run_dir, "history.csv"))
    best = max(rows, key=lambda r: r["val_top1"])
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["best_epoch"] == min(
        r["epoch"] for r in rows if r["val_top1"] == best["val_top1"]
    )
    # validation = one centre clip per test video; the same views scored
    # by evaluate() from best.keras give the same accuracy
    report = evaluate(
        os.path.join(run_dir, "best.keras"), prepared_data, num_clips=1, progress=False
    )
    assert report["clip"]["top1"] == pytest.approx(best["val_top1"], abs=1e-6)
    # final.keras is the last epoch's model
    final = evaluate(
        os.path.join(run_dir, "final.keras"), prepared_data, num_clips=1, progress=False
    )
    assert final["clip"]["top1"] == pytest.approx(rows[-1]["val_top1"], abs=1e-6)


def test_rerun_of_a_finished_run_is_a_no_op_and_changes_are_refused(trained_run):
    final = os.path.join(trained_run["run_dir"], "final.keras")
    stamp = os.path.getmtime(final)
    assert train(trained_run) == trained_run["run_dir"]
    assert os.path.getmtime(final) == stamp
    changed = dict(trained_run, learning_rate=0.5, batch_size=4)
    with pytest.raises(
        ValueError,
        match=r"is a finished run .*other settings .*"
        r"learning_rate: saved 0.1, now 0.5",
    ):
        train(changed)


def test_init_from_base_model_transfers_weights_by_name(prepared_data, tmp_path):
    base_dir = tmp_path / "base"
    train(
        tiny_config(prepared_data, base_dir, epochs=1, validation=False, class_regularization=False)
    )
    base = keras.saving.load_model(base_dir / "final.keras", compile=False)
    assert not keras_classreg.class_regularization_blocks(base)
    # fine-tune with a learning rate so small that the trained weights cannot
    # move measurably: what we read back is what was transferred
    tuned_dir = tmp_path / "tuned"
    train(
        tiny_config(
            prepared_data,
            tuned_dir,
            epochs=1,
            validation=False,
            init_from=str(base_dir),
            learning_rate=1e-12,
            weight_decay=0.0,
        )
    )
    report = json.load(open(tuned_dir / "config.json"))["init_from_report"]
    assert sorted(report["new"]) == ["stage1_classreg", "stage2_classreg"]
    assert report["mismatched"] == [] and report["unused"] == []
    tuned = keras.saving.load_model(tuned_dir / "final.keras", compile=False)
    for layer in base.layers:
        for weight in layer.trainable_weights:
            twin = next(
                w
                for w in tuned.get_layer(layer.name).trainable_weights
                if w.path.split("/")[-1] == weight.path.split("/")[-1]
            )
            np.testing.assert_allclose(twin.numpy(), weight.numpy(), atol=1e-6)
    blocks = keras_classreg.class_regularization_blocks(tuned)
    assert [b.name for b in blocks] == ["stage1_classreg", "stage2_classreg"]
    assert all(b.get_classifier() is tuned.get_layer("classifier") for b in blocks)
    # the blocks' projections are fresh Glorot-uniform draws, not copies
    for block in blocks:
        kernel = block.projection_kernel.numpy()
        limit = np.sqrt(6.0 / sum(kernel.shape))
        assert np.abs(kernel).max() <= limit and kernel.std() > limit / 4


def test_device_augmentation_trains_on_the_same_clips(prepared_data, tmp_path):
    """`augment_on="device"` feeds the training step the same clips as the
    host pipeline (resized in the step instead): with a learning rate too
    small to move the weights, the batch-norm statistics gathered over an
    epoch agree. (Real training diverges from float rounding alone: a
    Class Regularization block's argmax can flip on a near-tie.) The saved
    model is the plain float-clip model."""
    runs = {}
    for place in ("host", "device"):
        run_dir = tmp_path / place
        train(
            tiny_config(
                prepared_data,
                run_dir,
                epochs=1,
                validation=False,
                deterministic=True,
                seed=4,
                augmentation="scale_jitter",
                flip=True,
                augment_on=place,
                learning_rate=1e-12,
                weight_decay=0.0,
            )
        )
        runs[place] = keras.saving.load_model(run_dir / "final.keras", compile=False)
        assert json.load(open(run_dir / "config.json"))["augment_on"] == place
    host, device = runs["host"], runs["device"]
    assert device.input_shape == host.input_shape == (None, 8, 32, 32, 3)
    assert not any(isinstance(layer, keras_classreg.ClipAugmentation) for layer in device.layers)
    statistics = [w for w in host.weights if "moving_" in w.path]
    assert len(statistics) == 4
    for a, b in zip(host.weights, device.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    # the statistics did move during the epoch (from 0 / 1)
    assert all(np.abs(w.numpy() - ("variance" in w.path)).max() > 1e-3 for w in statistics)
