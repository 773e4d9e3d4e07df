"""Training parts that need no video data: config, schedules, weight decay,
weight transfer by name, the resumable callbacks, the evaluation report."""

import json
import math
import os

import keras
import numpy as np
import pytest
from test_train_support import tiny_c3d

import keras_classreg
from clipspec.rundir import RunDir
from training import callbacks as run_callbacks
from training.config import TrainConfig, load_config_file
from training.evaluate import compute_report
from training.model_building import resolve_model_builder, transfer_weights
from training.optimization import learning_rate_schedule, make_optimizer
from training.train import build_parser, config_from_args

SUPPORT = os.path.join(os.path.dirname(__file__), "test_train_support.py")


# --- config ---------------------------------------------------------------
def test_config_file_then_flags_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "data: d\nrun_dir: r\nepochs: 7\nbatch_size: 4\n"
        "affection_rates: [0.1, 0.2, 0.3, 0.4]\nlabel_smoothing: 0.1\n"
    )
    args = build_parser().parse_args(
        ["--config", str(path), "--batch-size", "16", "--no-class-regularization"]
    )
    config = config_from_args(args)
    assert config.epochs == 7 and config.batch_size == 16
    assert config.class_regularization is False
    assert config.affection_rates == [0.1, 0.2, 0.3, 0.4]
    assert config.label_smoothing == 0.1
    assert config.lr_schedule == "cosine" and config.momentum == 0.9  # defaults


def test_config_errors_name_file_field_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: d\nrun_dir: r\nbatch_size: 0\n")
    with pytest.raises(ValueError, match=r"`batch_size`.*positive int.*batch_size=0.*bad.yaml"):
        config_from_args(build_parser().parse_args(["--config", str(bad)]))
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"data": "d", "run_dir": "r", "epoch": 3}')
    with pytest.raises(ValueError, match=r"Unknown config field.*unknown.json: epoch"):
        config_from_args(build_parser().parse_args(["--config", str(unknown)]))
    broken = tmp_path / "broken.json"
    broken.write_text('{\n"data": "d",\n"epochs": 3,,\n}')
    with pytest.raises(ValueError, match=r"broken.json line 3"):
        load_config_file(broken)
    with pytest.raises(ValueError, match=r"`step_epochs`"):
        TrainConfig.from_dict({"data": "d", "run_dir": "r", "epochs": 10, "step_epochs": [8, 4]})
    with pytest.raises(ValueError, match=r"`data`.*required"):
        TrainConfig.from_dict({"run_dir": "r"})
    with pytest.raises(ValueError, match=r"`augment_on`.*one of \('host', 'device'\)"):
        TrainConfig.from_dict({"data": "d", "run_dir": "r", "augment_on": "gpu"})
    with pytest.raises(ValueError, match=r"'scale_jitter' or 'center' with augment_on"):
        TrainConfig.from_dict(
            {
                "data": "d",
                "run_dir": "r",
                "augment_on": "device",
                "augmentation": "random_resized_crop",
            }
        )


def test_help_lists_every_field():
    text = build_parser().format_help()
    for flag in (
        "--class-regularization",
        "--no-class-regularization",
        "--affection-rates",
        "--mixed-precision",
        "--xla",
        "--seed",
        "--label-smoothing",
        "--weight-decay",
        "--init-from",
        "--warmup-epochs",
        "--lr-schedule",
        "--config",
        "--augment-on",
    ):
        assert flag in text


# --- schedules and optimizer ----------------------------------------------
def test_cosine_schedule_with_warmup_matches_formula():
    peak, total, warmup, ratio = 0.1, 110, 10, 0.2
    schedule = learning_rate_schedule(peak, "cosine", total, warmup, final_lr_ratio=ratio)
    for step in (0, 5, 10, 35, 60, 110):
        if step < warmup:
            expected = peak * step / warmup
        else:
            progress = (step - warmup) / (total - warmup)
            expected = peak * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_step_schedule_with_warmup_matches_hand_values():
    # 4 warm-up steps, decays after steps 9 and 14 (epochs 2 and 3 of 5 steps)
    schedule = learning_rate_schedule(
        0.4, "step", 25, warmup_steps=4, step_boundaries=[10, 15], step_gamma=0.5
    )
    expected = {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4, 4: 0.4, 9: 0.4, 10: 0.2, 14: 0.2, 15: 0.1, 24: 0.1}
    for step, value in expected.items():
        assert float(schedule(step)) == pytest.approx(value, rel=1e-6), step
    with pytest.raises(ValueError, match="inside the warm-up"):
        learning_rate_schedule(0.4, "step", 25, warmup_steps=12, step_boundaries=[10])


def test_default_step_epochs_at_half_and_three_quarters():
    config = TrainConfig(
        data="d",
        run_dir="r",
        epochs=8,
        lr_schedule="step",
        warmup_epochs=0,
        learning_rate=1.0,
        step_gamma=0.1,
    )
    optimizer = make_optimizer(config, steps_per_epoch=10)
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    assert [round(float(schedule(s)), 6) for s in (39, 40, 59, 60)] == [1.0, 0.1, 0.1, 0.01]


def test_weight_decay_spares_batchnorm_and_biases():
    config = TrainConfig(
        data="d",
        run_dir="r",
        epochs=1,
        learning_rate=0.5,
        warmup_epochs=0,
        weight_decay=0.1,
        momentum=0.0,
    )
    optimizer = make_optimizer(config, steps_per_epoch=100)
    kernel = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    bias = keras.Variable(np.ones((2,), "float32"), name="bias")
    gamma = keras.Variable(np.ones((2,), "float32"), name="gamma")
    optimizer.apply_gradients(
        [
            (np.zeros((2, 2), "float32"), kernel),
            (np.zeros((2,), "float32"), bias),
            (np.zeros((2,), "float32"), gamma),
        ]
    )
    # decoupled decay: w <- w - lr * wd * w = 1 - 0.5 * 0.1
    np.testing.assert_allclose(kernel.numpy(), 0.95, rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), 1.0)
    np.testing.assert_allclose(gamma.numpy(), 1.0)


# --- models and weight transfer ------------------------------------------
def test_model_spec_resolution():
    assert resolve_model_builder("resnet18_3d") is not None
    builder = resolve_model_builder(f"{SUPPORT}:tiny_c3d")
    assert builder(num_classes=3).output_shape == (None, 3)
    with pytest.raises(ValueError, match="Unknown model 'resnet19_3d'"):
        resolve_model_builder("resnet19_3d")
    with pytest.raises(FileNotFoundError, match="nope.py"):
        resolve_model_builder("nope.py:tiny")
    with pytest.raises(ValueError, match="'missing' not found"):
        resolve_model_builder(f"{SUPPORT}:missing")


def test_transfer_weights_base_into_class_regularization_model():
    keras.utils.set_random_seed(1)
    base = tiny_c3d(4, class_regularization=False)
    keras.utils.set_random_seed(2)
    target = tiny_c3d(4, class_regularization=True)
    blocks = keras_classreg.class_regularization_blocks(target)
    fresh = {b.name: b.projection_kernel.numpy().copy() for b in blocks}
    report = transfer_weights(base, target)
    assert sorted(report["new"]) == ["stage1_classreg", "stage2_classreg"]
    assert report["mismatched"] == [] and report["unused"] == []
    assert set(report["transferred"]) == {layer.name for layer in base.layers if layer.weights}
    for layer in base.layers:
        for w_base, w_new in zip(layer.get_weights(), target.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(w_base, w_new)
    for block in blocks:  # untouched, still the fresh initialisation
        np.testing.assert_array_equal(block.projection_kernel.numpy(), fresh[block.name])
        assert block.get_classifier() is target.get_layer("classifier")
    # the blocks read the transferred classifier
    np.testing.assert_array_equal(
        blocks[0].get_classifier().kernel.numpy(), base.get_layer("classifier").kernel.numpy()
    )


def test_transfer_weights_reports_shape_mismatch_and_refuses_strangers():
    base = tiny_c3d(5, class_regularization=False)
    target = tiny_c3d(3, class_regularization=True)
    before = target.get_layer("classifier").get_weights()
    report = transfer_weights(base, target)
    assert report["mismatched"] == ["classifier"]
    np.testing.assert_array_equal(target.get_layer("classifier").get_weights()[0], before[0])
    stranger = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="other")])
    with pytest.raises(ValueError, match="no layer name in common"):
        transfer_weights(stranger, target)


# --- resumable callbacks --------------------------------------------------
class _FakeModel:
    def __init__(self):
        self.optimizer = None
        self.saved = []

    def save(self, path, overwrite=True):
        self.saved.append(path)
        with open(path, "w") as file:
            file.write("model")


def _drive(callback, model, first_epoch, scores):
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, score in enumerate(scores, start=first_epoch):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_top1": score})


def test_history_and_best_model_survive_a_resume(tmp_path):
    history = str(tmp_path / "history.csv")
    best_path = str(tmp_path / "best.keras")
    csv_cb = run_callbacks.HistoryCSV(history)
    best_cb = run_callbacks.BestModel(best_path, "val_top1", history)
    # first process: epochs 1..3 done, then killed after writing row 3 but
    # before its backup: the resume restarts at epoch index 2 (epoch 3).
    model = _FakeModel()
    for cb in (csv_cb, best_cb):
        cb.set_model(model)
        cb.on_train_begin()
    for epoch, score in enumerate([0.2, 0.6, 0.4]):
        for cb in (csv_cb, best_cb):
            cb.on_epoch_begin(epoch)
            cb.on_epoch_end(epoch, {"loss": 1.0, "val_top1": score})
    assert best_cb.best_epoch == 2 and len(model.saved) == 2
    assert open(best_path).read() == "model"  # renamed into place
    resumed = _FakeModel()
    csv_cb2 = run_callbacks.HistoryCSV(history)
    best_cb2 = run_callbacks.BestModel(best_path, "val_top1", history)
    for cb in (csv_cb2, best_cb2):  # history first, as in train()
        cb.set_model(resumed)
        cb.on_train_begin()
    # Keras's first on_epoch_begin of the resumed fit says where it starts
    for epoch, score in ((2, 0.5), (3, 0.7)):
        for cb in (csv_cb2, best_cb2):
            cb.on_epoch_begin(epoch)
        if epoch == 2:
            assert [r["epoch"] for r in run_callbacks.read_history(history)] == [1, 2]
            assert best_cb2.best == pytest.approx(0.6) and best_cb2.best_epoch == 2
        for cb in (csv_cb2, best_cb2):
            cb.on_epoch_end(epoch, {"loss": 1.0, "val_top1": score})
    rows = run_callbacks.read_history(history)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["val_top1"] for r in rows] == [0.2, 0.6, 0.5, 0.7]
    assert all(r["epoch_seconds"] >= 0 for r in rows)
    # 0.5 did not beat the remembered 0.6; 0.7 did
    assert len(resumed.saved) == 1 and best_cb2.best_epoch == 4


def test_epoch_checkpoints_keep_the_newest(tmp_path):
    model = _FakeModel()
    callback = run_callbacks.EpochCheckpoints(str(tmp_path), keep=2)
    callback.set_model(model)
    for epoch in range(4):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch)
    assert sorted(os.listdir(tmp_path)) == ["epoch_003.keras", "epoch_004.keras"]


def test_checkpoints_save_the_inference_model_of_a_training_wrapper(tmp_path):
    class Wrapper:
        def __init__(self):
            self.inference_model = _FakeModel()

    wrapper = Wrapper()
    best = run_callbacks.BestModel(
        str(tmp_path / "best.keras"), "top1", str(tmp_path / "history.csv")
    )
    epochs = run_callbacks.EpochCheckpoints(str(tmp_path / "checkpoints"), keep=0)
    for callback in (best, epochs):
        callback.set_model(wrapper)
        callback.on_train_begin()
        callback.on_epoch_begin(0)
        callback.on_epoch_end(0, {"top1": 0.5})
    assert len(wrapper.inference_model.saved) == 2
    with pytest.raises(KeyError, match="'top1' is not in the epoch logs"):
        best.on_epoch_end(1, {"loss": 1.0})


# --- evaluation report ------------------------------------------------------
def test_compute_report_against_hand_counts():
    names = ["a", "b", "c"]
    # video 0 (label 0): views say b, a  -> mean [0.45, 0.5, 0.05] -> b (wrong)
    # video 1 (label 1): views say b, b  -> b (right)
    # video 2 (label 2): views say c, a  -> mean [0.4, 0.1, 0.5]  -> c (right)
    probabilities = [
        [0.3, 0.6, 0.1],
        [0.6, 0.4, 0.0],
        [0.1, 0.8, 0.1],
        [0.2, 0.7, 0.1],
        [0.2, 0.1, 0.7],
        [0.6, 0.1, 0.3],
    ]
    labels = [0, 0, 1, 1, 2, 2]
    videos = [7, 7, 3, 3, 5, 5]
    report = compute_report(probabilities, labels, videos, names)
    # clip level: view hits = [no, yes, yes, yes, yes, no]
    assert report["clip"] == {"top1": pytest.approx(4 / 6), "top5": 1.0, "count": 6}
    assert report["video"]["top1"] == pytest.approx(2 / 3)
    assert report["video"]["count"] == 3
    assert report["confusion_matrix"] == [[0, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert [c["top1"] for c in report["per_class"]] == [0.0, 1.0, 1.0]
    assert report["mean_class_accuracy"] == pytest.approx(2 / 3)
    by_video = {v["video"]: v for v in report["videos"]}
    assert by_video[7]["predicted"] == 1 and by_video[7]["score"] == pytest.approx(0.5)
    json.dumps(report)  # JSON-ready


def test_compute_report_top5_among_many_classes():
    probabilities = np.full((2, 8), 0.01)
    probabilities[0, :6] = [0.3, 0.2, 0.15, 0.1, 0.09, 0.08]  # label 5: 6th
    probabilities[1, :6] = [0.3, 0.2, 0.15, 0.1, 0.09, 0.08]  # label 4: 5th
    report = compute_report(probabilities, [5, 4], [0, 1], list("abcdefgh"))
    assert report["clip"]["top5"] == 0.5 and report["clip"]["top1"] == 0.0
    with pytest.raises(ValueError, match=r"\[views, 8\]"):
        compute_report(np.ones((2, 3)), [0, 1], [0, 1], list("abcdefgh"))


def test_cli_reports_config_errors_without_a_traceback(capsys):
    from training.train import main

    assert main(["--data", "prepared"]) == 2
    assert "`run_dir`" in capsys.readouterr().err


def test_resume_check_takes_a_field_added_later_as_its_default(tmp_path):
    from training.train import _check_resume

    values = TrainConfig.from_dict({"data": "d", "run_dir": "r"}).to_dict()
    saved = dict(values)
    del saved["augment_on"]  # a run started before the field existed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    run = RunDir(tmp_path)
    _check_resume(run, values)  # the default: resumable
    with pytest.raises(ValueError, match="augment_on: saved None, now 'device'"):
        _check_resume(run, dict(values, augment_on="device"))


def test_validation_batches_are_padded_for_every_replica_with_zero_weight():
    """A last validation batch smaller than the replica count would leave a
    replica an empty batch (oneDNN's batch normalisation fails on it)."""
    import tensorflow as tf

    from training.train import _views_to_pairs

    clips = tf.reshape(tf.range(3 * 2, dtype=tf.float32), [3, 2])
    labels = tf.constant([2, 0, 1])
    ids = tf.constant([0, 1, 2])
    x, y = _views_to_pairs(3, replicas=1)(clips, labels, ids)
    assert x.shape == (3, 2) and y.shape == (3, 3)
    x, y, w = _views_to_pairs(3, replicas=2)(clips, labels, ids)
    np.testing.assert_array_equal(x.numpy(), [[0, 1], [2, 3], [4, 5], [0, 1]])
    np.testing.assert_array_equal(np.argmax(y.numpy(), axis=1), [2, 0, 1, 2])
    np.testing.assert_array_equal(w.numpy(), [1, 1, 1, 0])
    x, y, w = _views_to_pairs(3, replicas=4)(clips[:1], labels[:1], ids[:1])
    assert x.shape == (4, 2) and w.numpy().tolist() == [1, 0, 0, 0]


def test_start_up_noise_drops_the_onednn_banner_only_while_info_is_hidden(monkeypatch):
    from cliutil import tf_startup

    banner = (
        "I0000 00:00:1796553737.113964    4797 port.cc:153] oneDNN custom operations are on. "
        "You may see slightly different numerical results due to floating-point round-off."
    )
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    noise = tf_startup._start_up_noise()
    assert noise.search(banner)
    assert not noise.search("E0000 00:00:1.0 1 op.cc:1] oneDNN custom operations are on.")
    assert not noise.search("error: something the user must see")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    noise = tf_startup._start_up_noise()
    assert noise is None or not noise.search(banner)
