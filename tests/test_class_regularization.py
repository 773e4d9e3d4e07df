"""The ClassRegularization layer against a plain NumPy reference and its
defining properties (design §1)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_classreg import ClassRegularization


def numpy_reference(a, w, p, alpha, bias=None, mode="symmetric"):
    """Design §1 step by step, with W_l materialised: [K, C_l]."""
    pooled = a.reshape(a.shape[0], -1, a.shape[-1]).mean(axis=1)
    w_l = w.T @ p + (0 if bias is None else bias)
    z = pooled @ w_l.T
    k = z.argmax(axis=1)
    sel = w_l[k]
    lo, hi = (1 - alpha, 1 + alpha) if mode == "symmetric" else (1.0, 1 + alpha)
    mn, mx = sel.min(1, keepdims=True), sel.max(1, keepdims=True)
    span = mx - mn
    scale = np.where(span > 0, lo + (hi - lo) * (sel - mn) / np.where(span > 0, span, 1), 1.0)
    return a * scale.reshape(a.shape[0], *([1] * (a.ndim - 2)), a.shape[-1]), z, k


def make_block(features=12, classes=7, alpha=0.3, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    classifier = keras.layers.Dense(classes, name="classifier")
    classifier.build((None, features))
    classifier.kernel.assign(rng.normal(size=(features, classes)).astype("float32"))
    block = ClassRegularization(alpha, classifier, **kwargs)
    return block, classifier, rng


@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("mode", ["symmetric", "amplify"])
@pytest.mark.parametrize("shape", [(5, 3, 4, 4, 6), (5, 6, 6, 6)])
def test_matches_numpy_reference(use_bias, mode, shape):
    block, classifier, rng = make_block(use_bias=use_bias, normalization_range=mode)
    x = rng.normal(size=shape).astype("float32")
    block.build(x.shape)
    block.projection_kernel.assign(rng.normal(size=(12, shape[-1])).astype("float32"))
    bias = None
    if use_bias:
        bias = rng.normal(size=(shape[-1],)).astype("float32")
        block.projection_bias.assign(bias)
    expected, z, k = numpy_reference(
        x, classifier.kernel.numpy(), block.projection_kernel.numpy(), 0.3, bias, mode
    )
    np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(block.class_logits(x).numpy(), z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        block.class_weights().numpy(),
        classifier.kernel.numpy().T @ block.projection_kernel.numpy()
        + (0 if bias is None else bias),
        rtol=1e-5,
        atol=1e-5,
    )
    # class evidence for the block's own class: sum_c A[..., c] W_l[k, c]
    w_l = block.class_weights().numpy()
    np.testing.assert_allclose(
        block.class_evidence(x).numpy(),
        np.einsum("n...c,nc->n...", x, w_l[k]),
        rtol=1e-4,
        atol=1e-4,
    )
    np.testing.assert_allclose(
        block.class_evidence(x, class_index=2).numpy(),
        np.einsum("n...c,c->n...", x, w_l[2]),
        rtol=1e-4,
        atol=1e-4,
    )


def test_zero_affection_rate_is_identity():
    block, _, rng = make_block(alpha=0.0)
    x = rng.normal(size=(3, 2, 5, 5, 8)).astype("float32")
    np.testing.assert_array_equal(block(x).numpy(), x)


def test_ratio_within_affection_range():
    alpha = 0.4
    block, _, rng = make_block(alpha=alpha)
    x = rng.uniform(0.5, 2.0, size=(6, 3, 4, 4, 10)).astype("float32")
    ratio = block(x).numpy() / x
    assert ratio.min() >= 1 - alpha - 1e-6 and ratio.max() <= 1 + alpha + 1e-6
    # the range is used: least informative channel -> 1-a, most -> 1+a
    per_sample = ratio[:, 0, 0, 0, :]
    np.testing.assert_allclose(per_sample.min(axis=1), 1 - alpha, atol=1e-6)
    np.testing.assert_allclose(per_sample.max(axis=1), 1 + alpha, atol=1e-6)


def test_constant_class_weights_give_ones():
    block, _, rng = make_block()
    x = rng.normal(size=(2, 2, 3, 3, 4)).astype("float32")
    block.build(x.shape)
    block.projection_kernel.assign(np.ones((12, 4), "float32"))  # all channels equal
    np.testing.assert_array_equal(block(x).numpy(), x)


def _gradients(block, classifier, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(block(x) ** 2)
    return tape.gradient(loss, [x, block.projection_kernel, classifier.kernel])


def test_gradients_reach_projection_and_input_not_classifier():
    block, classifier, rng = make_block()
    gx, gp, gw = _gradients(block, classifier, rng.normal(size=(3, 2, 4, 4, 5)).astype("float32"))
    assert gw is None
    assert float(tf.reduce_max(tf.abs(gx))) > 0
    assert float(tf.reduce_max(tf.abs(gp))) > 0


def test_gradient_into_classifier_when_allowed():
    block, classifier, rng = make_block(stop_classifier_gradient=False)
    _, _, gw = _gradients(block, classifier, rng.normal(size=(3, 2, 4, 4, 5)).astype("float32"))
    assert gw is not None and float(tf.reduce_max(tf.abs(gw))) > 0


def test_batch_permutation_permutes_output():
    block, _, rng = make_block()
    x = rng.normal(size=(6, 2, 3, 3, 5)).astype("float32")
    perm = rng.permutation(6)
    np.testing.assert_allclose(block(x[perm]).numpy(), block(x).numpy()[perm], rtol=1e-6, atol=1e-6)
    # one sample alone gives the same as inside the batch
    np.testing.assert_allclose(block(x[2:3]).numpy(), block(x).numpy()[2:3], rtol=1e-6, atol=1e-6)


def test_mixed_precision_forward():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        block, classifier, rng = make_block()
        x = rng.normal(size=(2, 2, 3, 3, 5)).astype("float16")
        out = block(x)
        assert out.dtype == tf.float16 and out.shape == x.shape
        assert block.projection_kernel.dtype == "float32"
        assert block.class_logits(x).dtype == tf.float32
        expected, _, _ = numpy_reference(
            x.astype("float32"), classifier.kernel.numpy(), block.projection_kernel.numpy(), 0.3
        )
        np.testing.assert_allclose(out.numpy().astype("float32"), expected, rtol=2e-3, atol=2e-3)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_attach_replaces_classifier_and_checks_features():
    block, classifier, rng = make_block()
    x = rng.normal(size=(2, 2, 3, 3, 5)).astype("float32")
    block(x)
    other = keras.layers.Dense(3)
    other.build((None, 12))
    block.attach(other)
    assert block.get_classifier() is other and block.class_logits(x).shape == (2, 3)
    wrong = keras.layers.Dense(3)
    wrong.build((None, 9))
    with pytest.raises(ValueError, match="projects 12 classifier features"):
        block.attach(wrong)
    with pytest.raises(TypeError, match="keras.layers.Dense"):
        block.attach("not a layer object")


def test_classifier_is_not_a_tracked_weight():
    block, classifier, rng = make_block(use_bias=True)
    block(rng.normal(size=(1, 2, 2, 2, 3)).astype("float32"))
    names = sorted(w.path.split("/")[-1] for w in block.weights)
    assert names == ["projection_bias", "projection_kernel"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"affection_rate": 1.5}, "affection_rate"),
        ({"affection_rate": -0.1}, "affection_rate"),
        ({"normalization_range": "zero_mean"}, "normalization_range"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClassRegularization(**kwargs)


def test_errors_without_classifier_and_bad_rank():
    block = ClassRegularization(0.2)
    with pytest.raises(ValueError, match="has no classifier"):
        block(np.zeros((1, 2, 2, 2, 3), "float32"))
    named = ClassRegularization(0.2, classifier="classifier", classifier_features=4)
    with pytest.raises(ValueError, match="wire_classifiers"):
        named(np.zeros((1, 2, 2, 2, 3), "float32"))
    block, _, _ = make_block()
    with pytest.raises(ValueError, match="rank 5"):
        block(np.zeros((2, 3, 4), "float32"))


def test_get_config_round_trip():
    block, classifier, _ = make_block(use_bias=True, normalization_range="amplify")
    config = block.get_config()
    assert config["classifier"] == "classifier" and config["classifier_features"] == 12
    clone = ClassRegularization.from_config(config)
    assert clone.get_classifier() is None and clone.classifier_name == "classifier"
    assert clone.get_config() == config
