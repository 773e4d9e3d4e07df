"""`add_class_regularization`: Class Regularization added to existing models
(zoo 3D models, hand-made functional/sequential models, keras.applications)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_classreg import (
    ClassRegModel,
    ClassRegularization,
    add_class_regularization,
    class_regularization_blocks,
    models,
)

RESNET50_STAGES = ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
MOBILENET_STAGES = ["block_2_add", "block_5_add", "block_12_add", "block_15_add"]


def _clips(shape, n=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def _producers(layer):
    """The layers whose outputs `layer` consumes, over all its calls."""
    return [
        tensor._keras_history.operation
        for node in layer._inbound_nodes
        for tensor in node.input_tensors
    ]


def _assert_blocks_follow(model, targets, container=None):
    """Each target's output goes only into its block, and the block is the
    one consumer the target's old consumers now read from."""
    container = container or model
    layers = container.layers
    blocks = {b.name: b for b in layers if isinstance(b, ClassRegularization)}
    for target in targets:
        block = blocks[f"{target}_classreg"]
        assert {p.name for p in _producers(block)} == {target}
        for layer in layers:
            if layer is block:
                continue
            assert target not in [p.name for p in _producers(layer)], (
                f"{layer.name} still reads {target} directly"
            )
    for output in container.outputs:
        assert output._keras_history.operation.name not in targets


def _randomize_projections(model, seed=1):
    rng = np.random.default_rng(seed)
    for block in class_regularization_blocks(model):
        block.projection_kernel.assign(
            rng.normal(size=block.projection_kernel.shape).astype("float32")
        )


# ----------------------------------------------------------------------
# rank-4 activations in the block itself
# ----------------------------------------------------------------------
def test_block_on_rank4_pools_over_height_and_width():
    rng = np.random.default_rng(0)
    classifier = keras.layers.Dense(4)
    classifier.build((None, 6))
    block = ClassRegularization(0.5, classifier)
    x = rng.uniform(0.1, 1.0, size=(3, 5, 7, 8)).astype("float32")
    out = block(x).numpy()
    w_l = classifier.kernel.numpy().T @ block.projection_kernel.numpy()  # [K, C]
    z = x.mean(axis=(1, 2)) @ w_l.T
    np.testing.assert_allclose(block.class_logits(x).numpy(), z, rtol=1e-5, atol=1e-6)
    sel = w_l[z.argmax(axis=1)]
    lo, hi = sel.min(1, keepdims=True), sel.max(1, keepdims=True)
    scales = 0.5 + (sel - lo) / (hi - lo)
    np.testing.assert_allclose(out, x * scales[:, None, None, :], rtol=1e-5, atol=1e-6)
    evidence = block.class_evidence(x).numpy()
    assert evidence.shape == (3, 5, 7)
    np.testing.assert_allclose(evidence, np.einsum("nhwc,nc->nhw", x, sel), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------
# exact identity at affection rate 0, positions of the blocks
# ----------------------------------------------------------------------
@pytest.mark.slow  # full-size models
def test_zoo_model_without_blocks_identity_and_positions():
    shape = (4, 32, 32, 3)
    base = models.get("resnet18_3d", num_classes=5, input_shape=shape, class_regularization=False)
    stages = [f"stage{s}_block2_out" for s in range(1, 5)]
    x = _clips(shape)
    model = add_class_regularization(base, stages, affection_rates=0.0)
    assert isinstance(model, ClassRegModel)
    _randomize_projections(model)  # a = 0 must hold for any projection
    np.testing.assert_array_equal(model.predict(x, verbose=0), base.predict(x, verbose=0))
    blocks = class_regularization_blocks(model)
    assert [b.name for b in blocks] == [f"{s}_classreg" for s in stages]
    classifier = model.get_layer("classifier")
    assert all(b.get_classifier() is classifier for b in blocks)
    assert classifier is not base.get_layer("classifier")  # a copy
    _assert_blocks_follow(model, stages)
    # every original weight carried over; 4 new projection kernels
    assert len(model.weights) == len(base.weights) + 4


@pytest.mark.slow  # full-size models
def test_zoo_surgery_equals_zoo_model_built_with_blocks():
    """Surgery after each stage = the zoo's own ClassReg model (same weights),
    an independent check of positions, wiring and the default rates."""
    shape = (2, 32, 32, 3)
    base = models.get("resnet18_3d", num_classes=4, input_shape=shape, class_regularization=False)
    surgered = add_class_regularization(base, [f"stage{s}_block2_out" for s in range(1, 5)])
    assert [b.affection_rate for b in class_regularization_blocks(surgered)] == [0.1, 0.2, 0.3, 0.4]
    _randomize_projections(surgered)
    reference = models.get("resnet18_3d", num_classes=4, input_shape=shape)
    for layer in reference.layers:
        if isinstance(layer, ClassRegularization):
            stage = layer.name.split("_")[0]
            source = surgered.get_layer(f"{stage}_block2_out_classreg")
        else:
            source = surgered.get_layer(layer.name)
        layer.set_weights(source.get_weights())
    x = _clips(shape, n=4)
    np.testing.assert_allclose(
        surgered.predict(x, verbose=0), reference.predict(x, verbose=0), rtol=1e-6, atol=1e-7
    )
    assert not np.allclose(surgered.predict(x, verbose=0), base.predict(x, verbose=0), atol=1e-4)


def _hand_made_3d(num_classes=3):
    """Branches, a shared layer called twice, a multi-input layer, a nested
    Sequential, a float32 softmax after a logits Dense."""
    inputs = keras.Input((4, 12, 12, 3), name="clips")
    x = keras.layers.Conv3D(6, 3, padding="same", activation="relu", name="stem")(inputs)
    left = keras.layers.Conv3D(6, 1, name="left")(x)
    right = keras.layers.Conv3D(6, 3, padding="same", name="right")(x)
    shared = keras.layers.Conv3D(6, 1, name="shared")
    x = keras.layers.Add(name="merge")([shared(left), shared(right), x])
    nested = keras.Sequential(
        [
            keras.Input((4, 12, 12, 6)),
            keras.layers.Conv3D(8, 3, strides=2, padding="same", name="inner_conv"),
            keras.layers.BatchNormalization(name="inner_bn"),
            keras.layers.ReLU(name="inner_relu"),
        ],
        name="tower",
    )
    x = nested(x)
    x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probs")(logits)
    model = keras.Model(inputs, outputs, name="hand_made")
    # non-trivial BatchNorm statistics
    bn = nested.get_layer("inner_bn")
    bn.moving_mean.assign(np.linspace(-0.5, 0.5, 8).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 8).astype("float32"))
    return model


@pytest.mark.slow
def test_hand_made_functional_identity_shared_layer_and_nested_model():
    base = _hand_made_3d()
    targets = ["stem", "shared", "merge", "tower/inner_relu"]
    model = add_class_regularization(base, targets, affection_rates=0.0)
    x = _clips((4, 12, 12, 3))
    np.testing.assert_array_equal(model.predict(x, verbose=0), base.predict(x, verbose=0))
    blocks = class_regularization_blocks(model)
    assert sorted(b.name for b in blocks) == sorted(
        ["stem_classreg", "shared_classreg", "merge_classreg", "inner_relu_classreg"]
    )
    assert all(b.get_classifier() is model.get_layer("logits") for b in blocks)
    # the classifier was found behind the Activation layer
    _assert_blocks_follow(model, ["stem", "shared", "merge"])
    # the shared layer's one block follows both of its calls
    shared_block = model.get_layer("shared_classreg")
    assert [p.name for p in _producers(shared_block)] == ["shared", "shared"]
    assert [p.name for p in _producers(model.get_layer("merge"))] == [
        "shared_classreg",
        "shared_classreg",
        "stem_classreg",
    ]
    # inside the nested model, which became functional
    tower = model.get_layer("tower")
    _assert_blocks_follow(model, ["inner_relu"], container=tower)
    assert tower.get_layer("inner_bn").moving_mean.numpy()[0] == np.float32(-0.5)


def test_callable_after_and_rates_in_graph_order():
    base = _hand_made_3d()
    model = add_class_regularization(
        base,
        lambda layer: isinstance(layer, keras.layers.Conv3D),
        affection_rates=[0.0, 0.1, 0.2, 0.3, 0.4],
    )
    blocks = {b.name: b.affection_rate for b in class_regularization_blocks(model)}
    assert blocks == {
        "stem_classreg": 0.0,
        "left_classreg": 0.1,
        "right_classreg": 0.2,
        "shared_classreg": 0.3,
        "inner_conv_classreg": 0.4,
    }


def test_sequential_model():
    base = keras.Sequential(
        [
            keras.Input((2, 8, 8, 3)),
            keras.layers.Conv3D(4, 3, padding="same", activation="relu", name="c1"),
            keras.layers.Conv3D(8, 3, padding="same", activation="relu", name="c2"),
            keras.layers.GlobalAveragePooling3D(),
            keras.layers.Dense(3, activation="softmax", name="head"),
        ],
        name="seq",
    )
    model = add_class_regularization(base, ["c1", "c2"], affection_rates=0.0)
    assert isinstance(model, ClassRegModel) and model.name == "seq"
    x = _clips((2, 8, 8, 3))
    np.testing.assert_array_equal(model(x).numpy(), base(x).numpy())
    _assert_blocks_follow(model, ["c1", "c2"])


@pytest.mark.slow  # full-size models
def test_resnet50_application_identity_and_stage_positions():
    base = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=5)
    model = add_class_regularization(base, RESNET50_STAGES, affection_rates=0.0)
    _randomize_projections(model)
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), base.predict(x, verbose=0))
    blocks = class_regularization_blocks(model)
    assert [b.name for b in blocks] == [f"{s}_classreg" for s in RESNET50_STAGES]
    assert all(b.get_classifier() is model.get_layer("predictions") for b in blocks)
    # conv2_block3_out fed two layers (the next stage's shortcut and branch)
    _assert_blocks_follow(model, RESNET50_STAGES)
    assert sorted(
        layer.name
        for layer in model.layers
        if model.get_layer("conv2_block3_out_classreg") in _producers(layer)
    ) == ["conv3_block1_0_conv", "conv3_block1_1_conv"]
    # the original model is untouched
    assert not class_regularization_blocks(base)
    assert len(base.layers) + 4 == len(model.layers)


@pytest.mark.slow  # full-size models
def test_mobilenet_v2_fit_save_load_export(tmp_path):
    base = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=4
    )
    model = add_class_regularization(base, MOBILENET_STAGES)
    assert [b.affection_rate for b in class_regularization_blocks(model)] == [0.1, 0.2, 0.3, 0.4]
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 4, size=(8,))
    base_kernel = base.get_layer("predictions").kernel.numpy().copy()
    projection = model.get_layer("block_2_add_classreg").projection_kernel.numpy().copy()
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # the blocks learn, the original model is not trained along
    assert not np.array_equal(
        projection, model.get_layer("block_2_add_classreg").projection_kernel.numpy()
    )
    np.testing.assert_array_equal(base.get_layer("predictions").kernel.numpy(), base_kernel)

    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "surgered.keras")
    loaded = keras.saving.load_model(tmp_path / "surgered.keras")
    assert isinstance(loaded, ClassRegModel)
    classifier = loaded.get_layer("predictions")
    assert [b.get_classifier() is classifier for b in class_regularization_blocks(loaded)] == [
        True
    ] * 4
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)

    loaded.export(str(tmp_path / "export"), verbose=False)
    exported = tf.saved_model.load(str(tmp_path / "export"))  # keep a reference
    served = exported.serve(tf.constant(x))
    np.testing.assert_allclose(served.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_nested_backbone_round_trip(tmp_path):
    """A 2D backbone called inside the user's model, blocks inside it: the
    blocks of the nested model are re-wired to the outer classifier on load."""
    frames = keras.Input((16, 16, 3))
    f = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="b_conv1")(frames)
    f = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="b_conv2")(f)
    backbone = keras.Model(frames, f, name="backbone")
    inputs = keras.Input((16, 16, 3))
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    base = keras.Model(inputs, keras.layers.Dense(3, name="classifier")(x))
    model = add_class_regularization(
        base, ["b_conv1", "backbone/b_conv2"], affection_rates=[0.5, 0.5]
    )
    _randomize_projections(model)
    x = _clips((16, 16, 3), n=4)
    expected = model.predict(x, verbose=0)
    assert not np.allclose(expected, base.predict(x, verbose=0), atol=1e-5)
    model.save(tmp_path / "nested.keras")
    loaded = keras.saving.load_model(tmp_path / "nested.keras")
    blocks = class_regularization_blocks(loaded)
    assert len(blocks) == 2
    assert all(b.get_classifier() is loaded.get_layer("classifier") for b in blocks)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


@pytest.mark.slow  # full-size models
def test_model_with_blocks_gets_more_blocks():
    shape = (2, 32, 32, 3)
    base = models.get("resnet18_3d", num_classes=3, input_shape=shape)
    _randomize_projections(base)
    model = add_class_regularization(base, ["stage4_block1_out"], affection_rates=0.0)
    blocks = class_regularization_blocks(model)
    assert len(blocks) == 5
    assert all(b.get_classifier() is model.get_layer("classifier") for b in blocks)
    x = _clips(shape)
    np.testing.assert_array_equal(model.predict(x, verbose=0), base.predict(x, verbose=0))


def test_share_layers_reuses_the_original_weights():
    base = _hand_made_3d()
    model = add_class_regularization(base, ["stem"], share_layers=True)
    assert model.get_layer("stem") is base.get_layer("stem")
    assert model.get_layer("stem_classreg").get_classifier() is base.get_layer("logits")


def test_default_rates():
    from keras_classreg.surgery import _default_rates

    assert _default_rates(1) == (0.4,)
    assert _default_rates(3) == (0.2, 0.3, 0.4)  # the design's I3D defaults
    assert _default_rates(4) == (0.1, 0.2, 0.3, 0.4)  # ResNet defaults
    assert _default_rates(7) == (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


# ----------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------
def _tiny(head=True):
    inputs = keras.Input((2, 8, 8, 3), name="clips")
    x = keras.layers.Conv3D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
    if head:
        x = keras.layers.Dense(3, name="classifier")(x)
    return keras.Model(inputs, x, name="tiny")


def test_error_bad_layer_name():
    with pytest.raises(ValueError, match=r"no layer named 'cnv'.*Did you mean: 'conv'"):
        add_class_regularization(_tiny(), ["cnv"])


def test_error_no_dense_classifier():
    with pytest.raises(ValueError, match="Could not find the final Dense classifier"):
        add_class_regularization(_tiny(head=False), ["conv"])
    with pytest.raises(ValueError, match="Expected a `keras.layers.Dense`.*'pool'"):
        add_class_regularization(_tiny(), ["conv"], classifier="pool")


def test_error_ambiguous_classifier():
    inputs = keras.Input((2, 8, 8, 3))
    x = keras.layers.GlobalAveragePooling3D()(
        keras.layers.Conv3D(4, 3, padding="same", name="conv")(inputs)
    )
    model = keras.Model(
        inputs, [keras.layers.Dense(3, name="a")(x), keras.layers.Dense(2, name="b")(x)]
    )
    with pytest.raises(ValueError, match=r"several outputs produced by Dense layers \(a, b\)"):
        add_class_regularization(model, ["conv"])
    chosen = add_class_regularization(model, ["conv"], classifier="b")
    assert chosen.get_layer("conv_classreg").get_classifier() is chosen.get_layer("b")


def test_error_subclassed_model():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv3D(4, 3, padding="same")
            self.head = keras.layers.Dense(3)

        def call(self, x):
            return self.head(keras.ops.mean(self.conv(x), axis=(1, 2, 3)))

    net = Net()
    net(np.zeros((1, 2, 8, 8, 3), "float32"))
    with pytest.raises(
        TypeError, match="supports a functional model.*subclassed model of class Net"
    ):
        add_class_regularization(net, ["conv"])


def test_error_wrong_rank_layer_and_rates():
    with pytest.raises(ValueError, match=r"after layer 'pool': its output has shape \(None, 4\)"):
        add_class_regularization(_tiny(), ["pool"])
    with pytest.raises(ValueError, match=r"one per block \(1 blocks, after 'conv'\)"):
        add_class_regularization(_tiny(), ["conv"], affection_rates=[0.1, 0.2])
    with pytest.raises(ValueError, match="Expected a float between 0 and 1"):
        add_class_regularization(_tiny(), ["conv"], affection_rates=1.5)
    with pytest.raises(ValueError, match="chosen twice"):
        add_class_regularization(_tiny(), ["conv", "conv"])
    with pytest.raises(ValueError, match="callable chose no layer"):
        add_class_regularization(_tiny(), lambda layer: False)


def test_error_unbuilt_sequential_and_layer_inside_wrapper():
    with pytest.raises(ValueError, match="is not built"):
        add_class_regularization(keras.Sequential([keras.layers.Dense(2)]), ["x"])
    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="frame_conv")])
    inputs = keras.Input((2, 8, 8, 3))
    x = keras.layers.TimeDistributed(inner, name="per_frame")(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.raises(ValueError, match="inside 'per_frame' \\(TimeDistributed\\), which"):
        add_class_regularization(model, ["frame_conv"])
    # the wrapper's own (rank-5) output is fine
    surgered = add_class_regularization(model, ["per_frame"], affection_rates=0.0)
    clips = _clips((2, 8, 8, 3))
    np.testing.assert_array_equal(surgered(clips).numpy(), model(clips).numpy())


def test_error_custom_layer_without_config_suggests_share_layers():
    class Scale(keras.layers.Layer):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def call(self, x):
            return x * self.factor

    inputs = keras.Input((2, 8, 8, 3))
    x = Scale(2.0)(keras.layers.Conv3D(4, 3, padding="same", name="conv")(inputs))
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.raises(ValueError, match="share_layers=True"):
        add_class_regularization(model, ["conv"])
    shared = add_class_regularization(model, ["conv"], affection_rates=0.0, share_layers=True)
    clips = _clips((2, 8, 8, 3))
    np.testing.assert_array_equal(shared(clips).numpy(), model(clips).numpy())


def test_multi_input_model_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        rgb = keras.Input((2, 8, 8, 3), name="rgb")
        flow = keras.Input((2, 8, 8, 2), name="flow")
        a = keras.layers.Conv3D(4, 3, padding="same", name="rgb_conv")(rgb)
        b = keras.layers.Conv3D(4, 3, padding="same", name="flow_conv")(flow)
        x = keras.layers.Concatenate(name="fuse")([a, b])
        x = keras.layers.GlobalAveragePooling3D()(x)
        head = keras.layers.Dense(3, activation="softmax", dtype="float32", name="head")
        base = keras.Model({"rgb": rgb, "flow": flow}, head(x))
        zero = add_class_regularization(base, ["rgb_conv", "fuse"], affection_rates=0.0)
        active = add_class_regularization(base, ["rgb_conv", "fuse"], affection_rates=0.5)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(0)
    data = {
        "rgb": rng.normal(size=(2, 2, 8, 8, 3)).astype("float32"),
        "flow": rng.normal(size=(2, 2, 8, 8, 2)).astype("float32"),
    }
    assert zero.get_layer("rgb_conv").output.dtype == "float16"
    np.testing.assert_array_equal(zero(data).numpy(), base(data).numpy())
    _randomize_projections(active)
    out = active(data).numpy()
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.allclose(out, base(data).numpy(), atol=1e-3)


def test_rates_accept_numpy_and_reject_non_numbers():
    model = add_class_regularization(_tiny(), ["conv"], affection_rates=np.float32(0.25))
    assert model.get_layer("conv_classreg").affection_rate == 0.25
    model = add_class_regularization(_tiny(), ["conv"], affection_rates=np.array([0.5]))
    assert model.get_layer("conv_classreg").affection_rate == 0.5
    with pytest.raises(ValueError, match="Expected a float between 0 and 1"):
        add_class_regularization(_tiny(), ["conv"], affection_rates=["0.3"])
    with pytest.raises(ValueError, match="'clips' is an input of model"):
        add_class_regularization(_tiny(), ["clips"])
