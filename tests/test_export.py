"""training.export: signatures, in-graph preprocessing, assets, versions, CLI."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tiny_exports as testing
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from clipspec.format import ClipFormat
from keras_classreg import explanations as explain_lib
from keras_classreg import models
from training import export

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 7
SHAPE = (4, 16, 16, 3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    model, path = testing.export_tiny(base, "tiny", seed=1)
    return model, path, tf.saved_model.load(path)


def _signature_defs(path):
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
        saved.ParseFromString(handle.read())
    return saved.meta_graphs[0].signature_def


def _run(loaded, signature, **inputs):
    outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


@pytest.mark.slow
def test_version_folder_layout(exported):
    _, path, _ = exported
    assert path.endswith(os.path.join("tiny", "1"))
    assert sorted(os.listdir(path)) == [
        "assets",
        "assets.extra",
        "fingerprint.pb",
        "saved_model.pb",
        "variables",
    ]
    with open(os.path.join(path, "assets", "class_names.txt")) as handle:
        assert handle.read().splitlines() == testing.class_names(NUM_CLASSES)
    with open(os.path.join(path, "assets", "clip_format.json")) as handle:
        assert ClipFormat.from_json(handle.read()) == testing.clip_format(NUM_CLASSES)
    # No hidden partial folders are left beside the version.
    assert os.listdir(os.path.dirname(path)) == ["1"]


@pytest.mark.slow
def test_signature_defs(exported):
    _, path, _ = exported
    defs = _signature_defs(path)
    assert set(defs) == {
        "serving_default",
        "predict_normalized",
        "class_names",
        "clip_format",
        "classify",
        "explain",
        "explain_class",
        "__saved_model_init_op",
    }
    # an input, so that TF Serving's REST API can call it
    query = defs["clip_format"].inputs["query"]
    assert query.dtype == tf.int32.as_datatype_enum
    assert [d.size for d in query.tensor_shape.dim] == [-1]
    assert set(defs["clip_format"].outputs) == {"clip_format"}
    assert defs["classify"].method_name == "tensorflow/serving/classify"
    assert defs["serving_default"].method_name == "tensorflow/serving/predict"
    clips = defs["serving_default"].inputs["clips"]
    assert clips.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in clips.tensor_shape.dim] == [-1, -1, -1, -1, 3]
    normalized = defs["predict_normalized"].inputs["clips"]
    assert [d.size for d in normalized.tensor_shape.dim] == [-1, 4, 16, 16, 3]
    assert set(defs["serving_default"].outputs) == {
        "probabilities",
        "top_k_indices",
        "top_k_scores",
        "top_k_classes",
    }
    assert set(defs["classify"].inputs) == {"inputs"}
    assert set(defs["classify"].outputs) == {"classes", "scores"}


def test_serving_default_matches_the_model_and_names(exported):
    model, _, loaded = exported
    clips = testing.random_clips(3, SHAPE, seed=2)
    out = _run(loaded, "serving_default", clips=clips)
    expected = testing.reference_probabilities(model, clips)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    assert out["top_k_indices"].shape == (3, 5)
    assert out["top_k_indices"].dtype == np.int32
    order = np.argsort(-out["probabilities"], axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(out["top_k_indices"], order)
    np.testing.assert_allclose(
        out["top_k_scores"], np.take_along_axis(out["probabilities"], order, axis=1)
    )
    names = np.array(testing.class_names(NUM_CLASSES))
    assert out["top_k_classes"].astype(str).tolist() == names[order].tolist()


def test_time_and_space_are_centre_cropped(exported):
    model, _, loaded = exported
    long_wide = testing.random_clips(2, (8, 16, 24, 3), seed=3)
    out = _run(loaded, "serving_default", clips=long_wide)
    # T 8 -> frames 2..5; width 24 -> columns 4..19 (no resize: 16 x 24
    # already covers 16 x 16).
    cropped = long_wide[:, 2:6, :, 4:20]
    np.testing.assert_allclose(
        out["probabilities"], testing.reference_probabilities(model, cropped), atol=1e-5
    )


def test_short_clips_repeat_frames(exported):
    model, _, loaded = exported
    short = testing.random_clips(1, (2, 16, 16, 3), seed=4)
    out = _run(loaded, "serving_default", clips=short)
    stretched = short[:, [0, 0, 1, 1]]  # floor(i * 2 / 4)
    np.testing.assert_allclose(
        out["probabilities"], testing.reference_probabilities(model, stretched), atol=1e-5
    )


def test_small_frames_are_resized(exported):
    model, _, loaded = exported
    # A constant colour stays that colour through any resize.
    small = np.zeros((1, 4, 8, 6, 3), np.uint8) + np.array([10, 120, 250], np.uint8)
    full = np.zeros((1, *SHAPE), np.uint8) + np.array([10, 120, 250], np.uint8)
    out = _run(loaded, "serving_default", clips=small)
    np.testing.assert_allclose(
        out["probabilities"], testing.reference_probabilities(model, full), atol=1e-5
    )


def test_empty_clip_is_rejected_with_a_clear_message(exported):
    _, _, loaded = exported
    for empty in ((1, 0, 16, 16, 3), (0, 4, 16, 16, 3), (1, 4, 0, 16, 3)):
        with pytest.raises(
            tf.errors.InvalidArgumentError, match="at least one clip of at least one frame"
        ):
            _run(loaded, "serving_default", clips=np.zeros(empty, np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one clip"):
        _run(loaded, "predict_normalized", clips=np.zeros((0, *SHAPE), np.float32))


def test_predict_normalized_and_class_names(exported):
    model, _, loaded = exported
    clips = testing.random_clips(2, SHAPE, seed=5)
    out = _run(loaded, "predict_normalized", clips=testing.normalize(clips))
    np.testing.assert_allclose(
        out["probabilities"], testing.reference_probabilities(model, clips), atol=1e-5
    )
    names = _run(loaded, "class_names", class_index=np.array([6, 0, 3], np.int32))["class_name"]
    assert names.astype(str).tolist() == ["class_06", "class_00", "class_03"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="class indices"):
        _run(loaded, "class_names", class_index=np.array([7], np.int32))


@pytest.mark.slow  # more exports / a fresh process
def test_clip_format_signature_is_the_models_clip_format(exported, tmp_path):
    _, _, loaded = exported
    texts = loaded.signatures["clip_format"](query=tf.constant([0, 7]))["clip_format"].numpy()
    assert texts.shape == (2,) and texts[0] == texts[1]
    assert ClipFormat.from_json(texts[0].decode()) == testing.clip_format(NUM_CLASSES)
    fmt = testing.clip_format(
        3, SHAPE, stride=3, num_clips=2, num_crops=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    )
    path = export.export_version(testing.tiny_model(3, SHAPE), tmp_path, "m", fmt, warmup=False)
    text = tf.saved_model.load(path).signatures["clip_format"](query=tf.constant([0]))
    assert ClipFormat.from_json(text["clip_format"].numpy()[0].decode()) == fmt


def test_classify_reads_jpeg_frames(exported):
    model, _, loaded = exported
    clips = testing.random_clips(2, SHAPE, seed=6)
    examples = [export.clip_example(clip) for clip in clips]
    out = _run(
        loaded, "classify", inputs=np.array([e.SerializeToString() for e in examples], dtype=object)
    )
    # What the server sees after JPEG: decode each frame independently.
    decoded = np.stack(
        [
            np.stack(
                [
                    tf.io.decode_jpeg(frame).numpy()
                    for frame in e.features.feature["image/encoded"].bytes_list.value
                ]
            )
            for e in examples
        ]
    )
    expected = testing.reference_probabilities(model, decoded)
    order = np.argsort(-expected, axis=1)[:, :5]
    np.testing.assert_allclose(
        out["scores"], np.take_along_axis(expected, order, axis=1), atol=1e-5
    )
    names = np.array(testing.class_names(NUM_CLASSES))
    assert out["classes"].astype(str).tolist() == names[order].tolist()


def test_classify_example_without_frames_fails(exported):
    _, _, loaded = exported
    empty = tf.train.Example().SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/encoded"):
        _run(loaded, "classify", inputs=np.array([empty], dtype=object))


def test_explain_matches_the_library(exported):
    model, _, loaded = exported
    clips = testing.random_clips(2, SHAPE, seed=7)
    out = _run(loaded, "explain", clips=clips)
    reference = explain_lib.explain(model, testing.normalize(clips))
    assert out["maps"].shape == (2, 1, 4, 16, 16)
    np.testing.assert_allclose(out["maps"][:, 0], reference.maps["block"], atol=1e-4)
    np.testing.assert_array_equal(out["class_index"], reference.class_index)
    assert out["block_names"].astype(str).tolist() == [["block"], ["block"]]
    names = np.array(testing.class_names(NUM_CLASSES))
    assert out["class_name"].astype(str).tolist() == names[reference.class_index].tolist()
    chosen = _run(loaded, "explain_class", clips=clips, class_index=np.array([3, 5], np.int32))
    reference = explain_lib.explain(model, testing.normalize(clips), [3, 5])
    np.testing.assert_allclose(chosen["maps"][:, 0], reference.maps["block"], atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="class_index"):
        _run(loaded, "explain_class", clips=clips, class_index=np.array([3, 7], np.int32))


def test_warmup_requests_cover_every_signature(exported):
    _, path, _ = exported
    records = tf.data.TFRecordDataset(
        os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    )
    kinds = {}
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        kind = log.WhichOneof("log_type")
        request = getattr(log, kind).request
        kinds[request.model_spec.signature_name] = kind
    assert kinds == {
        "serving_default": "predict_log",
        "predict_normalized": "predict_log",
        "class_names": "predict_log",
        "clip_format": "predict_log",
        "classify": "classify_log",
        "explain": "predict_log",
        "explain_class": "predict_log",
    }


@pytest.mark.slow  # more exports / a fresh process
def test_loads_in_plain_tensorflow_without_this_package(exported, tmp_path):
    model, path, _ = exported
    clips = testing.random_clips(2, SHAPE, seed=8)
    np.save(tmp_path / "clips.npy", clips)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        out = loaded.signatures["serving_default"](
            clips=tf.constant(np.load({str(tmp_path / "clips.npy")!r})))
        np.save({str(tmp_path / "out.npy")!r}, out["probabilities"].numpy())
        ours = [m for m in sys.modules
                if m.split(".")[0] in ("keras_classreg", "training", "serving")]
        assert not ours, ours
    """)
    # Run from an empty folder with no path to this repository.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"), testing.reference_probabilities(model, clips), atol=1e-5
    )


@pytest.mark.slow  # more exports / a fresh process
def test_versions_are_numbered_and_immutable(tmp_path):
    model = testing.tiny_model(3, SHAPE)
    names = testing.clip_format(3, SHAPE)
    assert export.next_version(tmp_path / "m") == 1
    first = export.export_version(model, tmp_path, "m", names, warmup=False)
    (tmp_path / "m" / "7-notes").mkdir()  # not a version folder
    second = export.export_version(model, tmp_path, "m", names, warmup=False)
    assert os.path.basename(first) == "1" and os.path.basename(second) == "2"
    assert export.next_version(tmp_path / "m") == 3
    with pytest.raises(ValueError, match="already exists"):
        export.export_version(model, tmp_path, "m", names, version=2)
    with pytest.raises(ValueError, match="`name`"):
        export.export_version(model, tmp_path, "../evil", names)
    with pytest.raises(ValueError, match="`version`"):
        export.export_version(model, tmp_path, "m", names, version=0)
    assert sorted(os.listdir(tmp_path / "m")) == ["1", "2", "7-notes"]


@pytest.mark.slow
def test_bad_arguments_are_explained(tmp_path):
    model = testing.tiny_model(3, SHAPE)

    def fmt(**fields):
        return ClipFormat(
            **{"clip_length": 4, "crop_size": 16, "class_names": ["a", "b", "c"], **fields}
        )

    with pytest.raises(ValueError, match="has 3 classes but its clip format names 2"):
        export.export_model(model, tmp_path / "a", fmt(class_names=["a", "b"]))
    with pytest.raises(ValueError, match="distinct"):
        export.export_model(model, tmp_path / "b", fmt(class_names=["a", "a", "b"]))
    with pytest.raises(ValueError, match="line breaks"):
        export.export_model(model, tmp_path / "c", fmt(class_names=["a", "b\nc", "d"]))
    with pytest.raises(ValueError, match="`std`"):
        export.export_model(model, tmp_path / "d", fmt(std=(0.2, 0.0, 0.2)))
    with pytest.raises(ValueError, match="`top_k`"):
        export.export_model(model, tmp_path / "e", fmt(), top_k=0)
    with pytest.raises(ValueError, match=r"clip format says \(8, 16, 16, 3\)"):
        export.export_model(model, tmp_path / "g", fmt(clip_length=8))
    with pytest.raises(TypeError, match="clipspec.ClipFormat"):
        export.export_model(model, tmp_path / "h", ["a", "b", "c"])
    logits = models.get("resnet18_3d", num_classes=3, input_shape=SHAPE, classifier_activation=None)
    with pytest.raises(ValueError, match="softmax"):
        export.export_model(logits, tmp_path / "f", fmt())


@pytest.mark.slow  # more exports / a fresh process
def test_a_zoo_model_exports(tmp_path):
    model = models.get("resnet18_3d", num_classes=3, input_shape=(4, 32, 32, 3))
    fmt = ClipFormat(clip_length=4, crop_size=32, class_names=["a", "b", "c"])
    path = export.export_version(model, tmp_path, "r18", fmt, warmup=False)
    clips = testing.random_clips(2, (6, 40, 32, 3), seed=10)
    out = _run(tf.saved_model.load(path), "serving_default", clips=clips)
    np.testing.assert_allclose(
        out["probabilities"], testing.reference_probabilities(model, clips[:, 1:5, 4:36]), atol=1e-5
    )


@pytest.mark.slow  # more exports / a fresh process
def test_cli_exports_a_run(tmp_path, capsys):
    model = testing.tiny_model(3, SHAPE, seed=3)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    model.save_weights(run / "best.weights.h5")
    # A custom builder ('module:function'), as training.train accepts.
    config = {
        "model": "tiny_exports:tiny_model",
        "input_shape": list(SHAPE),
        "clip_length": 4,
        "crop_size": 16,
        "class_names": ["run", "jump", "swim"],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }
    (run / "config.json").write_text(json.dumps(config))
    base = tmp_path / "exports"
    assert (
        export.main(
            [
                "--model",
                str(run / "best.keras"),
                "--export-base",
                str(base),
                "--name",
                "r18",
                "--no-warmup",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(base / "r18" / "1")
    # A weights checkpoint, rebuilt from the config, gives the same model.
    assert (
        export.main(
            [
                "--model",
                str(run / "best.weights.h5"),
                "--export-base",
                str(base),
                "--name",
                "r18",
                "--no-warmup",
            ]
        )
        == 0
    )
    clips = testing.random_clips(1, SHAPE, seed=9)
    expected = np.asarray(model(testing.normalize(clips, [0.5] * 3, [0.25] * 3)))
    for version in ("1", "2"):
        loaded = tf.saved_model.load(str(base / "r18" / version))
        out = _run(loaded, "serving_default", clips=clips)
        np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
        assert out["top_k_classes"].shape == (1, 3)  # k = min(5, K)
    # A checkpoint in RUN_DIR/checkpoints/ finds the run's config above it;
    # a run directory means its best.keras.
    (run / "checkpoints").mkdir()
    model.save(run / "checkpoints" / "epoch_001.keras")
    assert (
        export.main(
            [
                "--model",
                str(run / "checkpoints" / "epoch_001.keras"),
                "--export-base",
                str(base),
                "--name",
                "r18",
                "--no-warmup",
            ]
        )
        == 0
    )
    assert (
        export.main(
            [
                "--model",
                str(run),
                "--export-base",
                str(base),
                "--name",
                "r18",
                "--version",
                "9",
                "--no-warmup",
            ]
        )
        == 0
    )
    capsys.readouterr()
    for version in ("3", "9"):
        loaded = tf.saved_model.load(str(base / "r18" / version))
        np.testing.assert_allclose(
            _run(loaded, "serving_default", clips=clips)["probabilities"], expected, atol=1e-5
        )
        assert _run(loaded, "class_names", class_index=np.array([2], np.int32))[
            "class_name"
        ].tolist() == [b"swim"]
    # Errors name the problem and exit with 2.
    (run / "config.json").write_text(json.dumps({"model": "resnet18_3d"}))
    assert (
        export.main(
            ["--model", str(run / "best.keras"), "--export-base", str(base), "--name", "r18"]
        )
        == 2
    )
    assert "No class names" in capsys.readouterr().err
    (run / "classes.txt").write_text("run\njump\nswim\n")
    assert (
        export.main(
            [
                "--model",
                str(tmp_path / "missing.keras"),
                "--class-names",
                str(run / "classes.txt"),
                "--export-base",
                str(base),
                "--name",
                "r18",
            ]
        )
        == 2
    )
    assert "no such model file" in capsys.readouterr().err


def test_cli_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "training.export", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0
    assert "--export-base" in result.stdout and "serving_default" in result.stdout


def _variable_names(loaded):
    return {v.name.split(":")[0].rsplit("/", 1)[-1] for v in loaded.variables}


@pytest.mark.slow
def test_blocks_are_exported_folded_unless_asked_not_to(exported, tmp_path):
    model, _, loaded = exported
    names = _variable_names(loaded)
    assert "folded_class_weights" in names and "projection_kernel" not in names
    _, path = testing.export_tiny(tmp_path, "unfolded", seed=1, warmup=False, fold=False)
    unfolded = tf.saved_model.load(path)
    names = _variable_names(unfolded)
    assert "projection_kernel" in names and "folded_class_weights" not in names
    clips = testing.random_clips(2, SHAPE, seed=5)
    np.testing.assert_allclose(
        _run(loaded, "serving_default", clips=clips)["probabilities"],
        _run(unfolded, "serving_default", clips=clips)["probabilities"],
        atol=1e-5,
    )
