"""`model.fit` under MirroredStrategy on two logical CPU devices, and a whole
model under mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_classreg
from keras_classreg import models
from training.distribute import make_strategy

SHAPE = (4, 16, 16, 3)


@pytest.mark.slow  # fit under MirroredStrategy
def test_fit_two_epochs_under_mirrored_strategy():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) >= 2, "conftest configures two logical CPU devices"
    # One strategy per device set and process: collective instance keys of
    # two MirroredStrategy objects collide in synchronized BatchNorm when
    # other tests in this worker process train under their own strategy.
    strategy = make_strategy()
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = models.get("resnet18_3d", num_classes=3, input_shape=SHAPE)
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(bn.synchronized for bn in bns)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *SHAPE)).astype("float32")
    y = rng.integers(0, 3, size=8)
    blocks = keras_classreg.class_regularization_blocks(model)
    before = [b.projection_kernel.numpy().copy() for b in blocks]
    classifier_before = model.get_layer("classifier").kernel.numpy().copy()
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"]).all()
    assert all(not np.array_equal(b0, b.projection_kernel.numpy()) for b0, b in zip(before, blocks))
    assert not np.array_equal(classifier_before, model.get_layer("classifier").kernel.numpy())
    # the same variable is read by the blocks and trained by the classifier
    assert all(b.get_classifier() is model.get_layer("classifier") for b in blocks)
    # replicas agree: the distributed model equals a single-device copy of it
    single = models.get(
        "resnet18_3d", num_classes=3, input_shape=SHAPE, synchronized_batchnorm=False
    )
    single.set_weights(model.get_weights())
    np.testing.assert_allclose(
        model.predict(x, verbose=0), single.predict(x, verbose=0), rtol=1e-4, atol=1e-5
    )


@pytest.mark.slow  # XLA-compiled float16 step on CPU
def test_mixed_precision_model_forward_and_step():
    # Keras turns `jit_compile` off while op determinism is on, and an earlier
    # deterministic training run in this process (training.train) may have
    # turned it on: switch it off here, restore it after.
    from tensorflow.python.framework import config as tf_config

    deterministic = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.get("resnet18_3d", num_classes=3, input_shape=SHAPE)
        x = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype("float32")
        blocks = keras_classreg.class_regularization_blocks(model)
        assert all(b.projection_kernel.dtype == "float32" for b in blocks)
        assert model.get_layer("stage1_block2_out").output.dtype == "float16"
        assert blocks[0].output.dtype == "float16"
        # TensorFlow has no float16 MaxPool3D kernel for the CPU: run the
        # float16 graph through XLA (as a GPU user would with --xla).
        forward = tf.function(lambda t: model(t, training=False), jit_compile=True)
        out = forward(x)
        assert out.dtype == tf.float32 and np.isfinite(out.numpy()).all()
        model.compile(
            keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy", jit_compile=True
        )
        loss = model.train_on_batch(x, np.array([0, 2]))
        assert np.isfinite(loss)
    finally:
        keras.mixed_precision.set_global_policy("float32")
        if deterministic:
            tf.config.experimental.enable_op_determinism()
