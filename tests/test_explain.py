"""Tests of `keras_classreg.explanations`: per-block class-evidence maps."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_classreg import ClassRegModel, ClassRegularization, models
from keras_classreg.explanations import (
    evidence_maps,
    explain,
    explanation_model,
    normalize_per_clip,
    trilinear_zoom,
)

T, H, W = 4, 8, 8


def _planted_model(pool=None):
    """A block reading the clip itself (optionally average-pooled first):
    RGB channels, identity projection, classifier kernel W chosen so that
    class 0 is "red", class 1 "green", class 2 "blue". The evidence of class
    k is then the k-th colour channel of the (pooled) clip."""
    classifier = keras.layers.Dense(3, activation="softmax", name="classifier")
    classifier.build((None, 3))
    classifier.set_weights([np.eye(3, dtype="float32"), np.zeros(3, "float32")])
    inputs = keras.Input((T, H, W, 3))
    x = inputs
    if pool:
        x = keras.layers.AveragePooling3D(pool, name="pool")(x)
    block = ClassRegularization(0.0, classifier, projection_initializer="identity", name="block")
    x = block(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    return ClassRegModel(inputs, classifier(x))


def _planted_clip():
    """Red square in the top-left corner, a smaller green one bottom-right,
    so red wins on average but green is present."""
    clip = np.zeros((T, H, W, 3), "float32")
    clip[:, 0:4, 0:4, 0] = 1.0  # 16 px red per frame
    clip[:, 6:8, 6:8, 1] = 1.0  # 4 px green per frame
    return clip


def _linear_resize_1d(values, size, axis):
    """Independent NumPy reference: half-pixel linear interpolation."""
    n = values.shape[axis]
    src = (np.arange(size) + 0.5) * n / size - 0.5
    src = np.clip(src, 0, n - 1)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, n - 1)
    frac = (src - low).reshape([-1 if a == axis else 1 for a in range(values.ndim)])
    return np.take(values, low, axis=axis) * (1 - frac) + np.take(values, high, axis=axis) * frac


def _reference_zoom(volume, size):
    for axis, target in zip((0, 1, 2), size):
        volume = _linear_resize_1d(volume, target, axis)
    return volume


def test_planted_map_is_the_class_colour_channel():
    model = _planted_model()
    clip = _planted_clip()
    result = explain(model, clip[None])
    assert result.block_names == ("block",)
    assert result.predicted_class.tolist() == [0]  # red covers more pixels
    assert result.class_index.tolist() == [0]
    volume = result.maps["block"][0]
    # Evidence = red channel: 1 on the red square, 0 elsewhere (min-max
    # leaves it unchanged).
    np.testing.assert_allclose(volume, clip[..., 0], atol=1e-6)
    # The block guesses red too, with softmax confidence of the pooled
    # channel means (16/64, 4/64, 0).
    means = np.array([16 / 64, 4 / 64, 0.0])
    expected = np.exp(means) / np.exp(means).sum()
    assert result.block_classes.tolist() == [[0]]
    np.testing.assert_allclose(result.block_confidences, [[expected[0]]], rtol=1e-5)
    np.testing.assert_allclose(result.probabilities[0], expected, rtol=1e-5)


def test_requested_class_changes_the_map():
    model = _planted_model()
    clip = _planted_clip()
    green = explain(model, clip[None], class_index=1)
    assert green.class_index.tolist() == [1]
    assert green.predicted_class.tolist() == [0]
    np.testing.assert_allclose(green.maps["block"][0], clip[..., 1], atol=1e-6)
    red = explain(model, clip[None]).maps["block"][0]
    assert np.abs(green.maps["block"][0] - red).max() == pytest.approx(1.0)
    # Blue is absent everywhere: constant evidence normalises to zeros.
    blue = explain(model, clip[None], class_index=2).maps["block"][0]
    assert not blue.any()


def test_per_clip_class_indices_and_batch_independence():
    model = _planted_model()
    clip = _planted_clip()
    swapped = clip[..., [1, 0, 2]]  # green square big, red small
    batch = np.stack([clip, swapped])
    result = explain(model, batch, class_index=[1, 1])
    np.testing.assert_allclose(result.maps["block"][0], clip[..., 1], atol=1e-6)
    np.testing.assert_allclose(result.maps["block"][1], swapped[..., 1], atol=1e-6)
    assert result.predicted_class.tolist() == [0, 1]
    alone = explain(model, swapped[None], class_index=1)
    np.testing.assert_allclose(alone.maps["block"][0], result.maps["block"][1])


def test_zoom_of_pooled_evidence_matches_numpy_trilinear():
    model = _planted_model(pool=(2, 2, 2))
    clip = np.random.default_rng(0).random((T, H, W, 3)).astype("float32")
    result = explain(model, clip[None], class_index=2)
    pooled = clip.reshape(T // 2, 2, H // 2, 2, W // 2, 2, 3).mean(axis=(1, 3, 5))[..., 2]
    expected = _reference_zoom(pooled, (T, H, W))
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(result.maps["block"][0], expected, atol=1e-5)


def test_trilinear_zoom_and_normalisation_functions():
    volume = np.random.default_rng(1).random((2, 3, 5, 4)).astype("float32")
    zoomed = trilinear_zoom(volume, (7, 10, 9)).numpy()
    assert zoomed.shape == (2, 7, 10, 9)
    for i in range(2):
        np.testing.assert_allclose(zoomed[i], _reference_zoom(volume[i], (7, 10, 9)), atol=1e-5)
    normalised = normalize_per_clip(volume * [[[[3.0]]], [[[-2.0]]]]).numpy()
    assert normalised.min(axis=(1, 2, 3)).tolist() == [0.0, 0.0]
    np.testing.assert_allclose(normalised.max(axis=(1, 2, 3)), [1.0, 1.0])
    np.testing.assert_allclose(
        normalised[0], (volume[0] - volume[0].min()) / np.ptp(volume[0]), atol=1e-6
    )
    assert not normalize_per_clip(np.ones((1, 2, 2, 2))).numpy().any()


@pytest.fixture(scope="module")
def resnet():
    keras.utils.set_random_seed(3)
    return models.get("resnet18_3d", num_classes=5, input_shape=(4, 32, 32, 3))


@pytest.mark.slow
def test_resnet_shapes_ranges_and_block_guesses(resnet):
    clips = np.random.default_rng(2).normal(size=(3, 4, 32, 32, 3)).astype("float32")
    result = explain(resnet, clips)
    assert len(result.block_names) == 4
    blocks = [resnet.get_layer(name) for name in result.block_names]
    activations = keras.Model(resnet.inputs[0], [b.input for b in blocks])(clips, training=False)
    for name, act in zip(result.block_names, activations):
        volume = result.maps[name]
        assert volume.shape == (3, 4, 32, 32) and volume.dtype == np.float32
        np.testing.assert_allclose(volume.min(axis=(1, 2, 3)), 0.0, atol=1e-6)
        # At 4x32x32 the last stage is one voxel: constant evidence, zeros.
        peak = 1.0 if np.prod(act.shape[1:4]) > 1 else 0.0
        np.testing.assert_allclose(volume.max(axis=(1, 2, 3)), peak, atol=1e-6)
    assert tuple(activations[-1].shape[1:4]) == (1, 1, 1)
    probabilities = resnet.predict(clips, verbose=0)
    np.testing.assert_allclose(result.probabilities, probabilities, atol=1e-5)
    np.testing.assert_array_equal(result.predicted_class, probabilities.argmax(-1))
    np.testing.assert_array_equal(result.class_index, result.predicted_class)
    # Each block's guess, recomputed with NumPy from its input activations
    # and the classifier / projection weights (W_l = W^T P).
    kernel = resnet.get_layer("classifier").get_weights()[0]
    for i, (block, act) in enumerate(zip(blocks, activations)):
        class_weights = kernel.T @ block.projection_kernel.numpy()
        logits = np.asarray(act).mean(axis=(1, 2, 3)) @ class_weights.T
        soft = np.exp(logits - logits.max(-1, keepdims=True))
        soft /= soft.sum(-1, keepdims=True)
        np.testing.assert_array_equal(result.block_classes[:, i], soft.argmax(-1))
        np.testing.assert_allclose(result.block_confidences[:, i], soft.max(-1), rtol=1e-4)
    other = (result.predicted_class + 1) % 5
    changed = explain(resnet, clips, class_index=other)
    assert any(np.abs(changed.maps[n] - result.maps[n]).max() > 0.05 for n in result.block_names)
    focused = result.focus(0.2)
    for name in result.block_names:
        kept = result.maps[name] >= 0.2
        np.testing.assert_array_equal(focused[name][kept], result.maps[name][kept])
        assert not focused[name][~kept].any()


@pytest.mark.slow
def test_traced_function_matches_eager_and_has_dynamic_batch(resnet):
    fn = tf.function(
        evidence_maps(resnet), input_signature=[tf.TensorSpec([None, 4, 32, 32, 3], tf.float32)]
    )
    concrete = fn.get_concrete_function()
    assert concrete.structured_outputs["maps"].shape.as_list() == [None, 4, 4, 32, 32]
    clips = np.random.default_rng(4).normal(size=(2, 4, 32, 32, 3)).astype("float32")
    traced = {k: v.numpy() for k, v in fn(clips).items()}
    eager = explain(resnet, clips)
    for i, name in enumerate(eager.block_names):
        np.testing.assert_allclose(traced["maps"][:, i], eager.maps[name], atol=1e-5)
    np.testing.assert_array_equal(traced["block_classes"], eager.block_classes)
    one = {k: v.numpy() for k, v in fn(clips[:1]).items()}
    np.testing.assert_allclose(one["maps"][0], traced["maps"][0], atol=1e-5)


@pytest.mark.slow
def test_logits_classifier_gives_probabilities():
    model = models.get(
        "resnet18_3d", num_classes=3, input_shape=(2, 16, 16, 3), classifier_activation=None
    )
    clips = np.random.default_rng(5).normal(size=(2, 2, 16, 16, 3)).astype("float32")
    result = explain(model, clips)
    logits = model.predict(clips, verbose=0)
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5)


@pytest.mark.slow
def test_bad_inputs_get_clear_errors():
    model = _planted_model()
    clip = _planted_clip()
    with pytest.raises(ValueError, match=r"clips\[None\]"):
        explain(model, clip)
    with pytest.raises(ValueError, match=r"takes clips of shape \(N, 4, 8, 8, 3\)"):
        explain(model, np.zeros((1, 4, 8, 9, 3), "float32"))
    with pytest.raises(ValueError, match="Expected float clips"):
        explain(model, np.zeros((1, T, H, W, 3), "uint8"))
    with pytest.raises(ValueError, match=r"indices in \[0, 3\)"):
        explain(model, clip[None], class_index=3)
    with pytest.raises(ValueError, match=r"one class per clip \(1\)"):
        explain(model, clip[None], class_index=[0, 1])
    with pytest.raises(ValueError, match="Expected None, an int"):
        explain(model, clip[None], class_index=1.5)
    with pytest.raises(ValueError, match="threshold"):
        explain(model, clip[None]).focus(1.5)
    plain = models.get(
        "resnet18_3d", num_classes=3, input_shape=(2, 16, 16, 3), class_regularization=False
    )
    with pytest.raises(ValueError, match="no ClassRegularization blocks"):
        explanation_model(plain)
