"""`ClipAugmentation`: the device-side crop/resize/flip/normalise layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_classreg import ClipAugmentation


def random_inputs(rng, batch=3, time=2, size=20, channels=3):
    frames = rng.integers(0, 256, (batch, time, size, size, channels), dtype=np.uint8)
    sides = rng.integers(5, size + 1, batch)
    window = np.stack(
        [[rng.integers(0, size - s + 1), rng.integers(0, size - s + 1), s, s] for s in sides]
    ).astype(np.int32)
    mirror = rng.integers(0, 2, batch).astype(np.int32)
    return {"frames": frames, "window": window, "mirror": mirror}


def test_matches_tf_image_resize_of_the_window():
    rng = np.random.default_rng(0)
    inputs = random_inputs(rng)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    out = ClipAugmentation(8, mean, std)(inputs).numpy()
    for b, (y, x, h, w) in enumerate(inputs["window"]):
        crop = inputs["frames"][b, :, y : y + h, x : x + w]
        want = tf.image.resize(crop, (8, 8), antialias=False).numpy()
        if inputs["mirror"][b]:
            want = want[:, :, ::-1]
        want = (want / 255.0 - np.array(mean)) / np.array(std)
        np.testing.assert_allclose(out[b], want, atol=1e-4)


def test_hand_computed_identity_mirror_and_halving():
    frames = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4, 1)
    layer = ClipAugmentation(4, mean=(0.0,), std=(1 / 255,))  # output = pixels
    whole = np.array([[0, 0, 4, 4]])
    same = layer({"frames": frames, "window": whole, "mirror": np.array([0])})
    np.testing.assert_allclose(same.numpy()[0, 0, :, :, 0], frames[0, 0, :, :, 0])
    mirrored = layer({"frames": frames, "window": whole, "mirror": np.array([1])})
    np.testing.assert_allclose(mirrored.numpy()[0, 0, :, :, 0], frames[0, 0, :, ::-1, 0])
    # 4 -> 2 with half-pixel centres samples at 0.5 and 2.5: means of pairs.
    half = ClipAugmentation(2, mean=(0.0,), std=(1 / 255,))(
        {"frames": frames, "window": whole, "mirror": np.array([0])}
    )
    np.testing.assert_allclose(half.numpy()[0, 0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    # A 2x2 window at (1, 2) resized to 2x2 is that window.
    part = ClipAugmentation(2, (0.0,), (1 / 255,))(
        {"frames": frames, "window": np.array([[1, 2, 2, 2]]), "mirror": np.array([0])}
    )
    np.testing.assert_allclose(part.numpy()[0, 0, :, :, 0], [[6, 7], [10, 11]])


def test_in_a_model_saves_and_loads(tmp_path):
    rng = np.random.default_rng(1)
    inputs = random_inputs(rng, batch=2, size=12)
    symbolic = {
        "frames": keras.Input((2, 12, 12, 3), dtype="uint8", name="frames"),
        "window": keras.Input((4,), dtype="int32", name="window"),
        "mirror": keras.Input((), dtype="int32", name="mirror"),
    }
    x = ClipAugmentation(6, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(symbolic)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling3D()(x))
    model = keras.Model(symbolic, outputs)
    path = tmp_path / "augmented.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(inputs).numpy(), model(inputs).numpy(), atol=1e-6)
    assert loaded.layers[3].get_config()["crop_size"] == 6


def test_argument_and_shape_errors():
    with pytest.raises(ValueError, match="Expected a positive int. Received: crop_size=0"):
        ClipAugmentation(0)
    with pytest.raises(ValueError, match="one value per channel each, std > 0"):
        ClipAugmentation(4, mean=(0, 0, 0), std=(1, 0, 1))
    layer = ClipAugmentation(4)
    frames = np.zeros((1, 1, 8, 8, 4), np.uint8)
    with pytest.raises(ValueError, match="3 mean/std values but its frames have 4 channels"):
        layer({"frames": frames, "window": np.array([[0, 0, 8, 8]]), "mirror": np.array([0])})
