"""The model zoo: every registered model builds, blocks sit where §1 says."""

import keras
import numpy as np
import pytest

import keras_classreg
from keras_classreg import models

SMALL = (8, 32, 32, 3)


@pytest.mark.parametrize(
    "name",
    [
        name if name == "resnet18_3d" else pytest.param(name, marks=pytest.mark.slow)  # full-size
        for name in models.names()
    ],
)
def test_every_model_builds_and_predicts(name):
    model = models.get(name, num_classes=5, input_shape=SMALL)
    out = model(np.random.rand(2, *SMALL).astype("float32"), training=False)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out.numpy().sum(axis=1), 1.0, rtol=1e-5)
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Dense) and last.name == "classifier"
    blocks = keras_classreg.class_regularization_blocks(model)
    assert len(blocks) == (3 if name == "i3d" else 4)
    assert all(block.get_classifier() is last for block in blocks)
    keras.backend.clear_session()


def test_names_and_get():
    assert {
        "resnet18_3d",
        "resnet34_3d",
        "resnet50_3d",
        "resnet101_3d",
        "resnet152_3d",
        "resnet200_3d",
        "wide_resnet50_3d",
        "resnext101_3d",
        "i3d",
    } == set(models.names())
    with pytest.raises(ValueError, match="Unknown model name 'resnet7_3d'"):
        models.get("resnet7_3d")


@pytest.mark.slow
def test_block_placement_and_default_rates():
    model = models.resnet3d(50, num_classes=4, input_shape=SMALL)
    blocks = keras_classreg.class_regularization_blocks(model)
    assert [b.name for b in blocks] == [f"stage{i}_classreg" for i in range(1, 5)]
    assert [b.affection_rate for b in blocks] == [0.1, 0.2, 0.3, 0.4]
    # each block directly follows the last residual block of its stage
    last_of_stage = {
        1: "stage1_block3_out",
        2: "stage2_block4_out",
        3: "stage3_block6_out",
        4: "stage4_block3_out",
    }
    for i, block in enumerate(blocks, start=1):
        assert block.input is model.get_layer(last_of_stage[i]).output
    assert [b.input.shape[-1] for b in blocks] == [256, 512, 1024, 2048]
    i3d = models.i3d(num_classes=4, input_shape=SMALL)
    blocks = keras_classreg.class_regularization_blocks(i3d)
    assert [b.name for b in blocks] == [
        "Mixed_3c_classreg",
        "Mixed_4f_classreg",
        "Mixed_5c_classreg",
    ]
    assert [b.affection_rate for b in blocks] == [0.2, 0.3, 0.4]
    assert [b.input.shape[-1] for b in blocks] == [480, 832, 1024]


@pytest.mark.slow
def test_without_class_regularization_and_custom_rates():
    base = models.get("resnet18_3d", num_classes=3, input_shape=SMALL, class_regularization=False)
    assert keras_classreg.class_regularization_blocks(base) == []
    model = models.get(
        "resnet18_3d",
        num_classes=3,
        input_shape=SMALL,
        affection_rates=(0.0, 0.5, 0.5, 1.0),
        class_regularization_options={"use_bias": True},
    )
    blocks = keras_classreg.class_regularization_blocks(model)
    assert [b.affection_rate for b in blocks] == [0.0, 0.5, 0.5, 1.0]
    assert all(b.use_bias for b in blocks)
    # same layer names apart from the blocks: weights transfer by name
    assert {layer.name for layer in model.layers} - {layer.name for layer in base.layers} == {
        b.name for b in blocks
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"affection_rates": (0.1, 0.2)}, "Expected 4 rates"),
        ({"input_shape": (8, 32, 32)}, "Expected \\(T, H, W, 3\\)"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_builder_argument_errors(kwargs, message):
    arguments = {"num_classes": 3, "input_shape": SMALL, **kwargs}
    with pytest.raises(ValueError, match=message):
        models.get("resnet18_3d", **arguments)
    with pytest.raises(ValueError, match="depth"):
        models.resnet3d(20)


@pytest.mark.slow  # FLOPs of full-size models
def test_flops_of_the_blocks_are_per_sample_vector_products():
    shape = (2, 32, 32, 3)
    base = models.get("resnet50_3d", num_classes=400, input_shape=shape, class_regularization=False)
    with_cr = models.get("resnet50_3d", num_classes=400, input_shape=shape)
    base_flops, cr_flops = keras_classreg.flops(base), keras_classreg.flops(with_cr)
    assert base_flops > 1e8
    # Per block: a P^T and W[:, k]^T P (2 x 2 C_f C_l) plus (a P^T) W
    # (2 C_f K), plus pooling / normalisation / scaling (small). Projecting
    # all K classes (2 K C_f C_l = 6.3 GFLOPs here) must not happen.
    channels, features, classes = (256, 512, 1024, 2048), 2048, 400
    matmuls = sum(4 * features * c + 2 * features * classes for c in channels)
    extra = cr_flops - base_flops
    assert matmuls <= extra < 1.3 * matmuls, (extra, matmuls)
    # the stem alone, from the profiler, equals 2 x multiply-adds by hand
    stem = keras.Model(base.inputs, base.get_layer("stem_conv").output)
    assert keras_classreg.flops(stem) == 2 * (2 * 16 * 16 * 64) * (7 * 7 * 7 * 3)
