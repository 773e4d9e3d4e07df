"""Small models and exports for tests of exports, servers and clients.

>>> model = tiny_model(num_classes=7, input_shape=(4, 16, 16, 3))
>>> model.output_shape
(None, 7)
"""

import keras
import numpy as np

from clipspec.format import DEFAULT_MEAN, DEFAULT_STD, ClipFormat
from keras_classreg import ClassRegModel, ClassRegularization
from training.export import export_version


def tiny_model(num_classes=7, input_shape=(4, 16, 16, 3), seed=0):
    """A one-conv Class Regularization model (milliseconds per clip) whose
    probabilities are far from uniform, so top-k orders are stable."""
    keras.utils.set_random_seed(seed)
    classifier = keras.layers.Dense(
        num_classes,
        activation="softmax",
        name="classifier",
        kernel_initializer=keras.initializers.RandomNormal(stddev=3.0, seed=seed),
    )
    classifier.build((None, 8))
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv3D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = ClassRegularization(0.3, classifier, name="block")(x)
    x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
    return ClassRegModel(inputs, classifier(x), name="tiny")


def class_names(num_classes):
    return [f"class_{i:02d}" for i in range(num_classes)]


def normalize(clips, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    """The export's normalisation in NumPy: `(x / 255 - mean) / std`."""
    clips = np.asarray(clips, np.float32)
    return ((clips / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(
        np.float32
    )


def reference_probabilities(model, clips):
    """The model's probabilities for uint8 clips already at its size."""
    return np.asarray(model(normalize(clips), training=False))


def clip_format(num_classes=7, input_shape=(4, 16, 16, 3), **fields):
    """The `ClipFormat` of a tiny model (fields override the defaults)."""
    return ClipFormat(
        clip_length=input_shape[0],
        crop_size=input_shape[1],
        class_names=class_names(num_classes),
        **fields,
    )


def export_tiny(
    export_base,
    name,
    seed=0,
    version=None,
    num_classes=7,
    input_shape=(4, 16, 16, 3),
    clip_format_fields=None,
    **kwargs,
):
    """Exports `tiny_model(seed)`; returns `(model, version folder)`."""
    model = tiny_model(num_classes, input_shape, seed)
    fmt = clip_format(num_classes, input_shape, **(clip_format_fields or {}))
    path = export_version(model, export_base, name, fmt, version=version, **kwargs)
    return model, path


def random_clips(count, shape=(4, 16, 16, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)


__all__ = [
    "class_names",
    "clip_format",
    "export_tiny",
    "normalize",
    "random_clips",
    "reference_probabilities",
    "tiny_model",
]
