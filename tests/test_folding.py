"""`fold_class_regularization` and `FoldedClassRegularization`: the inference
copy with folded class weights; `.keras` files of the earlier single-class
form still load."""

import keras
import numpy as np
import pytest

import keras_classreg
from keras_classreg import (
    ClassRegularization,
    FoldedClassRegularization,
    fold_class_regularization,
    models,
)

SHAPE = (4, 32, 32, 3)


def _model(use_bias=False):
    keras.utils.set_random_seed(0)
    model = models.get(
        "resnet18_3d",
        num_classes=5,
        input_shape=SHAPE,
        class_regularization_options={"use_bias": use_bias},
    )
    rng = np.random.default_rng(1)
    for block in keras_classreg.class_regularization_blocks(model):
        # non-trivial projections (and biases), so the blocks matter
        block.projection_kernel.assign(rng.normal(size=block.projection_kernel.shape))
        if block.projection_bias is not None:
            block.projection_bias.assign(rng.normal(size=block.projection_bias.shape))
    return model


def _clips(n=3):
    return np.random.default_rng(0).normal(size=(n, *SHAPE)).astype("float32")


def _block_inputs(model, x):
    blocks = keras_classreg.class_regularization_blocks(model)
    probe = keras.Model(model.inputs, [b.input for b in blocks])
    return blocks, probe(x)


@pytest.mark.slow
@pytest.mark.parametrize("use_bias", [False, True])
def test_folded_copy_matches_the_model(use_bias):
    model, x = _model(use_bias), _clips()
    folded = fold_class_regularization(model)
    assert type(folded) is type(model)
    np.testing.assert_allclose(folded(x), model(x), atol=1e-5)
    blocks, inputs = _block_inputs(model, x)
    folded_blocks = keras_classreg.class_regularization_blocks(folded)
    for block, copy, activation in zip(blocks, folded_blocks, inputs):
        assert isinstance(copy, FoldedClassRegularization)
        assert copy.num_classes == 5 and copy.trainable_weights == []
        assert not hasattr(copy, "projection_kernel")
        np.testing.assert_allclose(
            copy.class_weights(), block.class_weights(), rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            copy.class_logits(activation), block.class_logits(activation), rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose(
            copy.channel_scales(activation), block.channel_scales(activation), atol=1e-5
        )
        for class_index in (None, 3):
            np.testing.assert_allclose(
                copy.class_evidence(activation, class_index),
                block.class_evidence(activation, class_index),
                rtol=1e-4,
                atol=1e-4,
            )
    # the folded blocks stay wired to the copy's classifier (explanations use it)
    classifier = folded.get_layer("classifier")
    assert all(b.get_classifier() is classifier for b in folded_blocks)
    # dropping the projections makes the copy smaller
    assert folded.count_params() < model.count_params()


@pytest.mark.slow  # training / a save-load round trip
def test_folded_copy_is_independent_of_later_training():
    model, x = _model(), _clips(4)
    folded = fold_class_regularization(model)
    before = keras.ops.convert_to_numpy(folded(x))
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    model.fit(x, np.array([0, 1, 2, 3]), epochs=1, verbose=0)
    assert not np.allclose(model(x), before, atol=1e-6)
    np.testing.assert_array_equal(folded(x), before)
    # folding again picks the new weights up; folding a folded model is a copy
    np.testing.assert_allclose(fold_class_regularization(model)(x), model(x), atol=1e-5)
    np.testing.assert_array_equal(fold_class_regularization(folded)(x), before)


@pytest.mark.slow  # training / a save-load round trip
def test_folded_copy_saves_and_loads(tmp_path):
    model, x = _model(), _clips()
    folded = fold_class_regularization(model)
    folded.save(tmp_path / "folded.keras")
    loaded = keras.saving.load_model(tmp_path / "folded.keras")
    np.testing.assert_array_equal(loaded(x), folded(x))
    blocks = keras_classreg.class_regularization_blocks(loaded)
    assert [type(b) for b in blocks] == [FoldedClassRegularization] * 4
    assert [b.num_classes for b in blocks] == [5] * 4
    assert all(b.get_classifier() is loaded.get_layer("classifier") for b in blocks)
    explanation = keras_classreg.explanations.explain(loaded, x[:1])
    reference = keras_classreg.explanations.explain(model, x[:1])
    assert explanation.block_names == reference.block_names
    for name in reference.block_names:
        np.testing.assert_allclose(explanation.maps[name], reference.maps[name], atol=1e-4)


def test_fold_rank4_surgery_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    plain = keras.Model(inputs, keras.layers.Dense(4, name="classifier")(x))
    model = keras_classreg.add_class_regularization(plain, after=["conv"], affection_rates=0.5)
    block = keras_classreg.class_regularization_blocks(model)[0]
    block.projection_kernel.assign(np.random.default_rng(2).normal(size=(8, 8)))
    x = np.random.default_rng(3).normal(size=(5, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(fold_class_regularization(model)(x), model(x), atol=1e-5)


@pytest.mark.slow
def test_fold_errors():
    with pytest.raises(TypeError, match="Expected a `keras.Model`"):
        fold_class_regularization("model.keras")
    plain = models.get("resnet18_3d", num_classes=3, input_shape=SHAPE, class_regularization=False)
    with pytest.raises(ValueError, match="no ClassRegularization blocks"):
        fold_class_regularization(plain)
    inputs = keras.Input((2, 4, 4, 3))
    unwired = keras.Model(
        inputs, ClassRegularization(0.2, classifier="head", classifier_features=8)(inputs)
    )
    with pytest.raises(ValueError, match="not wired"):
        fold_class_regularization(unwired)


def test_folded_block_rejects_a_classifier_with_other_classes():
    block = FoldedClassRegularization(num_classes=5, affection_rate=0.2)
    dense = keras.layers.Dense(7)
    dense.build((None, 8))
    with pytest.raises(ValueError, match="5 classes, but classifier"):
        block.attach(dense)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="`num_classes`"):
            FoldedClassRegularization(num_classes=bad)
    with pytest.raises(ValueError, match="folded_classes"):
        ClassRegularization(0.2, folded_classes=5)  # the form before the split


def test_folded_block_by_hand_matches_numpy():
    weights = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, -1.0]], "float32")  # K=2, C=3
    block = FoldedClassRegularization(num_classes=2, affection_rate=0.5)
    x = np.array([[[[1.0, 2.0, 0.0]]], [[[0.0, 0.0, 1.0]]]], "float32")  # [2,1,1,3]
    block.build(x.shape)
    block.folded_class_weights.assign(weights)
    # sample 0: z = [1, 6] -> class 1, w = [0, 3, -1] -> scales [0.75, 1.5, 0.5]
    # sample 1: z = [2, -1] -> class 0, w = [1, 0, 2] -> scales [1.0, 0.5, 1.5]
    np.testing.assert_allclose(block.channel_scales(x), [[0.75, 1.5, 0.5], [1.0, 0.5, 1.5]])
    np.testing.assert_allclose(block(x), x * np.array([[[[0.75, 1.5, 0.5]]], [[[1.0, 0.5, 1.5]]]]))
