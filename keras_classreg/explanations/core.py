"""Per-block explanations: one forward pass, one map per block, per clip.

An explanation *method* (see `keras_classreg.explanations.registry`) turns
the activations a Class Regularization block receives into a volume
`[N, t, h, w]`; this module runs the model once, applies the method at every
block, zooms each volume trilinearly to the clip's `T x H x W` and min-max
normalises it per clip into `[0, 1]` (the recipe of Stergiou et al.'s
Saliency Tubes, applied at every block). It also reports each block's own
class guess `argmax softmax(z_l)` and its confidence: how early in depth the
network "knows" the class.

Pure library: tensors in, arrays out; rendering and files live in
`clipspec.render` and `training.explain`.

Example:

>>> import numpy as np
>>> from keras_classreg import models
>>> from keras_classreg.explanations import explain
>>> model = models.get("resnet18_3d", num_classes=3, input_shape=(4, 32, 32, 3))
>>> clips = np.random.rand(2, 4, 32, 32, 3).astype("float32")
>>> result = explain(model, clips)
>>> result.block_names
('stage1_classreg', 'stage2_classreg', 'stage3_classreg', 'stage4_classreg')
>>> result.maps["stage1_classreg"].shape
(2, 4, 32, 32)
>>> result.block_classes.shape
(2, 4)
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_classreg.classreg_model import class_regularization_blocks
from keras_classreg.explanations import registry

#: Saliency Tubes' "focus" threshold: normalised evidence below it is hidden.
FOCUS_THRESHOLD = 0.2

_OUTPUT_KEYS = (
    "maps",
    "class_index",
    "predicted_class",
    "probabilities",
    "block_classes",
    "block_confidences",
)


@dataclasses.dataclass(frozen=True)
class Explanation:
    """What `explain` returns for a batch of `N` clips and `B` blocks.

    Attributes:
        block_names: the `B` block names, in graph order (shallow → deep).
        maps: block name → float32 `[N, T, H, W]` class-evidence volume,
            zoomed to the clip and min-max normalised per clip into
            `[0, 1]` (all zeros where the evidence is constant).
        class_index: int `[N]`, the class the maps are for (the model's top
            class unless one was requested).
        predicted_class: int `[N]`, the model's top class.
        probabilities: float32 `[N, K]`, the model's class probabilities.
        block_classes: int `[N, B]`, each block's own class guess.
        block_confidences: float32 `[N, B]`, the softmax probability of
            each block's guess.
    """

    block_names: tuple
    maps: dict
    class_index: np.ndarray
    predicted_class: np.ndarray
    probabilities: np.ndarray
    block_classes: np.ndarray
    block_confidences: np.ndarray

    @classmethod
    def from_outputs(cls, outputs, block_names):
        """Builds an `Explanation` from the dict `evidence_maps` returns
        (tensors or arrays, e.g. the outputs of an exported `explain`
        signature); other keys are ignored."""
        missing = [key for key in _OUTPUT_KEYS if key not in outputs]
        if missing:
            raise ValueError(
                f"Missing explanation outputs: {', '.join(missing)}. Expected "
                f"the outputs of `evidence_maps`: {', '.join(_OUTPUT_KEYS)}."
            )
        arrays = {key: np.asarray(outputs[key]) for key in _OUTPUT_KEYS}
        names = tuple(
            name.decode() if isinstance(name, bytes) else str(name) for name in block_names
        )
        if arrays["maps"].ndim != 5 or arrays["maps"].shape[1] != len(names):
            raise ValueError(
                f"Expected `maps` of shape [N, {len(names)}, T, H, W] for the "
                f"{len(names)} blocks {names}. "
                f"Received: maps.shape={arrays['maps'].shape}"
            )
        return cls(
            block_names=names,
            maps={name: arrays["maps"][:, i] for i, name in enumerate(names)},
            **{key: arrays[key] for key in _OUTPUT_KEYS if key != "maps"},
        )

    def focus(self, threshold=FOCUS_THRESHOLD):
        """The maps with values below `threshold` set to zero (the "focus"
        view of Saliency Tubes), as a new dict block name → `[N, T, H, W]`."""
        _check_threshold(threshold)
        return {
            name: np.where(volume >= threshold, volume, 0.0).astype("float32")
            for name, volume in self.maps.items()
        }


def block_names(model):
    """Names of the Class Regularization blocks of `model`, in graph order."""
    return tuple(block.name for block in _blocks(model))


def explanation_model(model):
    """A `keras.Model` giving every block's input activations and the output.

    Its outputs are `[A_1, ..., A_B, y]`: the activations each Class
    Regularization block receives, in graph order, then the model's own
    output, so that one forward pass yields everything an explanation needs.
    Weights are shared with `model` (no copy).
    """
    blocks = _blocks(model)
    if len(model.outputs) != 1:
        raise ValueError(
            f"Model '{model.name}' has {len(model.outputs)} outputs; "
            "explanations need a model with one output (the classifier's)."
        )
    activations = []
    for block in blocks:
        try:
            activations.append(block.input)
        except (AttributeError, ValueError) as error:
            raise ValueError(
                f"Cannot read the input of ClassRegularization layer "
                f"'{block.name}' in model '{model.name}': explanations need "
                "a functional model in which every block is called exactly "
                "once."
            ) from error
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(
        inputs,
        activations + [model.output],
        name=f"{model.name}_explanation",
    )


def evidence_maps(model, method=registry.DEFAULT_METHOD):
    """A traceable function `clips, class_index=None -> dict of tensors`.

    The returned function runs `model` once (inference mode) on a float
    clip batch `[N, T, H, W, C]` (already normalised as the model expects;
    `T`, `H`, `W` may be dynamic) and returns:

    - `maps`: float32 `[N, B, T, H, W]`, the per-block volumes of `method`
      (a registered method name, default `"class_evidence"`) zoomed to the
      clip, min-max normalised per clip into `[0, 1]`;
    - `class_index`: int32 `[N]`, the class the maps are for;
    - `predicted_class`: int32 `[N]`; `probabilities`: float32 `[N, K]`;
    - `block_classes`: int32 `[N, B]`; `block_confidences`: float32 `[N, B]`.

    `class_index` may be `None` (the model's top class), an int, or an int
    tensor `[N]`; it is not range-checked here (use `explain` for checked
    eager calls). Wrap the function in `tf.function` with an input
    signature to export it, e.g. as a SavedModel `explain` signature:

    >>> import tensorflow as tf
    >>> from keras_classreg import models
    >>> model = models.get("resnet18_3d", num_classes=3, input_shape=(4, 32, 32, 3))
    >>> fn = tf.function(evidence_maps(model), input_signature=[
    ...     tf.TensorSpec([None, 4, 32, 32, 3], tf.float32)])
    >>> fn.get_concrete_function().structured_outputs["maps"].shape
    TensorShape([None, 4, 4, 32, 32])
    """
    block_map = registry.get(method).block_map
    blocks = _blocks(model)
    auxiliary = explanation_model(model)
    to_probabilities = _probability_function(blocks[0].get_classifier())

    def compute(clips, class_index=None):
        clips = tf.convert_to_tensor(clips)
        if clips.shape.rank != 5:
            raise ValueError(
                "Expected a batch of clips `[N, T, H, W, C]`. "
                f"Received a tensor of shape {clips.shape}."
            )
        outputs = auxiliary(clips, training=False)
        activations, output = outputs[:-1], outputs[-1]
        probabilities = to_probabilities(tf.cast(output, tf.float32))
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        if class_index is None:
            target = predicted
        else:
            target = tf.cast(class_index, tf.int32)
            target = tf.broadcast_to(target, tf.shape(predicted))
        dynamic = tf.shape(clips)
        size = [
            dim if dim is not None else dynamic[axis]
            for axis, dim in enumerate(clips.shape[1:4], start=1)
        ]
        maps, classes, confidences = [], [], []
        for block, activation in zip(blocks, activations):
            evidence = block_map(block, activation, target)
            maps.append(normalize_per_clip(trilinear_zoom(evidence, size)))
            block_probabilities = tf.nn.softmax(block.class_logits(activation))
            classes.append(tf.argmax(block_probabilities, axis=-1, output_type=tf.int32))
            confidences.append(tf.reduce_max(block_probabilities, axis=-1))
        return {
            "maps": tf.stack(maps, axis=1),
            "class_index": target,
            "predicted_class": predicted,
            "probabilities": probabilities,
            "block_classes": tf.stack(classes, axis=1),
            "block_confidences": tf.stack(confidences, axis=1),
        }

    return compute


def explain(model, clips, class_index=None, method=registry.DEFAULT_METHOD):
    """Per-block maps and class guesses for a batch of clips.

    Args:
        model: a functional Keras model with Class Regularization blocks
            (any builder of `keras_classreg.models` with
            `class_regularization=True`).
        clips: float array `[N, T, H, W, C]`, normalised as the model's
            input expects.
        class_index: `None` for each clip's predicted class, an int for one
            class for every clip, or a sequence of `N` ints.
        method: a registered explanation method (`registry.names()`);
            default `"class_evidence"`.

    Returns:
        an `Explanation` (NumPy arrays; maps in `[0, 1]`).
    """
    clips = np.asarray(clips)
    if clips.ndim != 5:
        raise ValueError(
            "Invalid value for argument `clips`. Expected an array "
            "`[N, T, H, W, C]` (add a batch axis with `clips[None]` for one "
            f"clip). Received: clips.shape={clips.shape}"
        )
    expected = tuple(model.inputs[0].shape[1:]) if model.inputs else None
    if expected and any(e is not None and e != r for e, r in zip(expected, clips.shape[1:])):
        raise ValueError(
            f"Invalid value for argument `clips`. Model '{model.name}' takes "
            f"clips of shape (N, {', '.join(str(e) for e in expected)}). "
            f"Received: clips.shape={clips.shape}"
        )
    if not np.issubdtype(clips.dtype, np.floating):
        raise ValueError(
            "Invalid value for argument `clips`. Expected float clips "
            "normalised as the model expects (e.g. `(x / 255 - mean) / std`). "
            f"Received: clips.dtype={clips.dtype}"
        )
    registry.get(method)  # a clear error for an unknown method first
    names = block_names(model)
    num_classes = int(_blocks(model)[0].get_classifier().units)
    target = _check_class_index(class_index, len(clips), num_classes)
    result = evidence_maps(model, method)(
        clips, None if target is None else tf.constant(target, tf.int32)
    )
    return Explanation.from_outputs({key: value.numpy() for key, value in result.items()}, names)


def trilinear_zoom(volumes, size):
    """Linear interpolation of `[N, t, h, w]` volumes to `size = (T, H, W)`.

    Separable (time, then height and width) linear interpolation with
    half-pixel centres, clamped at the borders: the same convention as
    `tf.image.resize(..., "bilinear")` and PyTorch's
    `interpolate(mode="trilinear", align_corners=False)`. `size` may be a
    tensor.
    """
    volumes = tf.convert_to_tensor(volumes, tf.float32)
    static = [
        dim if isinstance(dim, int) else tf.get_static_value(dim)
        for dim in (size if isinstance(size, (list, tuple)) else [None] * 3)
    ]
    size = tf.cast(tf.stack(size) if isinstance(size, (list, tuple)) else size, tf.int32)
    shape = tf.shape(volumes)
    n, t, h, w = shape[0], shape[1], shape[2], shape[3]
    # Height and width: the time steps are a batch of images.
    x = tf.reshape(volumes, tf.stack([n * t, h, w, 1]))
    x = tf.image.resize(x, size[1:3], method="bilinear")
    # Time: an image of t rows and H*W columns, resized along the rows only.
    x = tf.reshape(x, tf.stack([n, t, size[1] * size[2], 1]))
    x = tf.image.resize(x, tf.stack([size[0], size[1] * size[2]]), method="bilinear")
    x = tf.reshape(x, tf.stack([n, size[0], size[1], size[2]]))
    # Keep the static shape where it is known (e.g. for export signatures).
    x.set_shape([volumes.shape[0]] + [None if dim is None else int(dim) for dim in static])
    return x


def normalize_per_clip(volumes):
    """Min-max normalises each `[T, H, W]` volume of `[N, T, H, W]` into
    `[0, 1]`; a constant volume (no evidence either way) becomes zeros."""
    volumes = tf.convert_to_tensor(volumes, tf.float32)
    low = tf.reduce_min(volumes, axis=[1, 2, 3], keepdims=True)
    span = tf.reduce_max(volumes, axis=[1, 2, 3], keepdims=True) - low
    flat = span <= 0.0
    scaled = (volumes - low) / tf.where(flat, tf.ones_like(span), span)
    return tf.where(flat, tf.zeros_like(volumes), scaled)


def _blocks(model):
    blocks = class_regularization_blocks(model)
    if not blocks:
        raise ValueError(
            f"Model '{model.name}' has no ClassRegularization blocks: "
            "explanations read each block's class weights. Build the model "
            "with `class_regularization=True`."
        )
    for block in blocks:
        block._require_classifier()  # a clear error if not wired yet
    return blocks


def _probability_function(classifier):
    activation = keras.activations.serialize(classifier.activation)
    name = activation if isinstance(activation, str) else activation.get("config", activation)
    if name == "softmax":
        return lambda output: output
    if name == "linear":
        return tf.nn.softmax
    raise ValueError(
        f"The classifier '{classifier.name}' has activation {name!r}; "
        "explanations expect class probabilities (`softmax`) or logits "
        "(no activation)."
    )


def _check_class_index(class_index, num_clips, num_classes):
    if class_index is None:
        return None
    values = np.asarray(class_index)
    if not np.issubdtype(values.dtype, np.integer) or values.ndim > 1:
        raise ValueError(
            "Invalid value for argument `class_index`. Expected None, an int "
            f"or a sequence of {num_clips} ints. Received: "
            f"class_index={class_index!r}"
        )
    if values.ndim == 1 and len(values) != num_clips:
        raise ValueError(
            "Invalid value for argument `class_index`. Expected one class "
            f"per clip ({num_clips}). Received {len(values)} values: "
            f"class_index={class_index!r}"
        )
    if np.any(values < 0) or np.any(values >= num_classes):
        raise ValueError(
            "Invalid value for argument `class_index`. Expected class "
            f"indices in [0, {num_classes}). Received: "
            f"class_index={class_index!r}"
        )
    return np.broadcast_to(values, (num_clips,)).astype("int32")


def _check_threshold(threshold):
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0.0 <= threshold <= 1.0
    ):
        raise ValueError(
            "Invalid value for argument `threshold`. Expected a float between "
            f"0 and 1. Received: threshold={threshold!r}"
        )


__all__ = [
    "FOCUS_THRESHOLD",
    "Explanation",
    "block_names",
    "evidence_maps",
    "explain",
    "explanation_model",
    "normalize_per_clip",
    "trilinear_zoom",
]
