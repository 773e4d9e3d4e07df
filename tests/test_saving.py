"""`.keras` round trips and SavedModel export, each checked in a fresh process."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_classreg
from keras_classreg import models

SHAPE = (4, 32, 32, 3)


def _run(code, *args):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _model_and_data(tmp_path):
    model = models.get(
        "resnet18_3d",
        num_classes=5,
        input_shape=SHAPE,
        class_regularization_options={"use_bias": True},
    )
    x = np.random.default_rng(0).normal(size=(3, *SHAPE)).astype("float32")
    # make the blocks matter: non-trivial projections
    for block in keras_classreg.class_regularization_blocks(model):
        block.projection_kernel.assign(
            np.random.default_rng(1).normal(size=block.projection_kernel.shape)
        )
    np.save(tmp_path / "x.npy", x)
    return model, x


@pytest.mark.slow  # a fresh Python process
def test_keras_round_trip_in_fresh_process(tmp_path):
    model, x = _model_and_data(tmp_path)
    expected = model.predict(x, verbose=0)
    np.save(tmp_path / "expected.npy", expected)
    model.save(tmp_path / "model.keras")
    out = _run(
        """
        import json, sys, numpy as np, keras
        import keras_classreg
        path, xs, ys = sys.argv[1:]
        model = keras.saving.load_model(path)
        x, y = np.load(xs), np.load(ys)
        same = bool(np.array_equal(model.predict(x, verbose=0), y))
        classifier = model.get_layer("classifier")
        blocks = keras_classreg.class_regularization_blocks(model)
        wired = all(b.get_classifier() is classifier for b in blocks)
        before = classifier.kernel.numpy().copy()
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        model.fit(x, np.array([0, 1, 2]), epochs=1, verbose=0)
        updated = not np.array_equal(before, classifier.kernel.numpy())
        seen = all(b.get_classifier().kernel is classifier.kernel for b in blocks)
        print(json.dumps({"same": same, "wired": wired, "blocks": len(blocks),
                          "updated": updated, "seen": seen,
                          "type": type(model).__name__}))
        """,
        tmp_path / "model.keras",
        tmp_path / "x.npy",
        tmp_path / "expected.npy",
    )
    assert out == {
        "same": True,
        "wired": True,
        "blocks": 4,
        "updated": True,
        "seen": True,
        "type": "ClassRegModel",
    }


def test_plain_keras_model_needs_wiring(tmp_path):
    classifier = keras.layers.Dense(3, name="head")
    classifier.build((None, 8))
    inputs = keras.Input((2, 6, 6, 3))
    x = keras.layers.Conv3D(8, 3, padding="same")(inputs)
    x = keras_classreg.ClassRegularization(0.3, classifier, name="block")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(inputs, classifier(x))
    data = np.random.rand(2, 2, 6, 6, 3).astype("float32")
    expected = model.predict(data, verbose=0)
    model.save(tmp_path / "plain.keras")
    loaded = keras.saving.load_model(tmp_path / "plain.keras")
    block = loaded.get_layer("block")
    assert block.get_classifier() is None and block.classifier_name == "head"
    keras_classreg.wire_classifiers(loaded)
    assert block.get_classifier() is loaded.get_layer("head")
    np.testing.assert_array_equal(loaded.predict(data, verbose=0), expected)


@pytest.mark.slow  # a fresh Python process
def test_export_loads_without_this_package(tmp_path):
    model, x = _model_and_data(tmp_path)
    np.save(tmp_path / "expected.npy", model.predict(x, verbose=0))
    model.export(str(tmp_path / "export"), verbose=False)
    out = _run(
        """
        import json, sys, numpy as np, tensorflow as tf
        path, xs, ys = sys.argv[1:]
        loaded = tf.saved_model.load(path)
        got = loaded.serve(tf.constant(np.load(xs))).numpy()
        print(json.dumps({
            "close": bool(np.allclose(got, np.load(ys), rtol=1e-5, atol=1e-6)),
            "imported": any(m.startswith("keras_classreg") for m in sys.modules),
        }))
        """,
        tmp_path / "export",
        tmp_path / "x.npy",
        tmp_path / "expected.npy",
    )
    assert out == {"close": True, "imported": False}
