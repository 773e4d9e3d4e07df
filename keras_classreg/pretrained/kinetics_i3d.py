"""DeepMind's I3D checkpoints (`deepmind/kinetics-i3d`) into the zoo.

Their checkpoints (`data/checkpoints/{rgb_imagenet,rgb_scratch,
rgb_scratch_kin600,flow_*}/model.ckpt`) are TensorFlow checkpoints of a
Sonnet model. Each `Unit3D` stores `conv_3d/w` (`[t, h, w, in, out]`, the
Keras layout) and a Sonnet `BatchNorm` without scale: `batch_norm/beta`,
`moving_mean`, `moving_variance` (eps 1e-3); the logits are a 1x1x1
convolution `Logits/Conv3d_0c_1x1/conv_3d/w` with bias `b`. Names: the
Kinetics-400 checkpoints under `RGB/inception_i3d/` (`Flow/...` for flow),
the Kinetics-600 one without a scope, with `[1, 1, 1, 1, C]` batch-norm
statistics and `/Momentum` optimizer slots. One quirk of `i3d.py`:
`Mixed_5b/Branch_2`'s 3x3x3 convolution is named `Conv3d_0a_3x3` (every
other one is `Conv3d_0b_3x3`); the zoo's layer is
`Mixed_5b_Branch_2_Conv3d_0b_3x3`.

Input convention (their README): RGB frames at 25 fps, short side resized
to 256 (bilinear), pixels rescaled to [-1, 1], centre crop 224 at test
time; trained on 64-frame clips.
"""

import glob
import os
import re

import numpy as np
import tensorflow as tf

from keras_classreg import models
from keras_classreg.pretrained._common import Pretrained, WeightSource, set_layer_weights
from keras_classreg.pretrained.class_names import kinetics_class_names

SCOPES = ("RGB/inception_i3d/", "")
_FLOW_SCOPE = "Flow/inception_i3d/"
_STEM = "Conv3d_1a_7x7/conv_3d/w"
_LOGITS = "Logits/Conv3d_0c_1x1/conv_3d/"
# Zoo layer (as a checkpoint scope) -> the checkpoint's scope, where they differ.
_RENAMED = {"Mixed_5b/Branch_2/Conv3d_0b_3x3": "Mixed_5b/Branch_2/Conv3d_0a_3x3"}


def load_kinetics_i3d(
    checkpoint_prefix,
    input_shape=(64, 224, 224, 3),
    class_names=None,
    classifier_activation="softmax",
    dropout=0.5,
):
    """Loads a `deepmind/kinetics-i3d` RGB checkpoint into the zoo's I3D.

    Args:
        checkpoint_prefix: e.g. `.../rgb_imagenet/model.ckpt` (the files
            `model.ckpt.index` and `model.ckpt.data-00000-of-00001`), its
            `.index` file, or the folder holding one checkpoint.
        input_shape: `(T, H, W, 3)`; default 64 x 224 x 224 (their training
            clips). At 224 x 224 with T >= 16 the model computes exactly
            theirs; see `keras_classreg.models.i3d`'s `logits_pool`.
        class_names: default Kinetics-400 or -600 (by the class count).
        classifier_activation: `"softmax"` (default) or `None` for logits.
        dropout: before the classifier, in training only (theirs: 0.5).

    Returns:
        a `Pretrained` record.
    """
    origin = _checkpoint_prefix(checkpoint_prefix)
    try:
        reader = tf.train.load_checkpoint(origin)
    except (tf.errors.OpError, ValueError) as error:
        raise ValueError(f"{origin}: not a readable TensorFlow checkpoint: {error}") from None
    shapes = reader.get_variable_to_shape_map()
    scope = _scope_of(shapes, origin)
    values = {
        name[len(scope) :]: reader.get_tensor(name) for name in shapes if name.startswith(scope)
    }
    others = sorted(name for name in shapes if not name.startswith(scope))
    return convert_kinetics_i3d_variables(
        values,
        origin,
        input_shape=input_shape,
        class_names=class_names,
        classifier_activation=classifier_activation,
        dropout=dropout,
        scope=scope,
        other_variables=others,
    )


def _checkpoint_prefix(path):
    """A checkpoint prefix from a prefix, its `.index` file or its folder.

    A folder is searched for its one `*.index` file rather than read through
    its `checkpoint` state file: the published folders' state files name
    the authors' own paths (`/cns/...`)."""
    path = os.fspath(path)
    if path.endswith(".index"):
        return path[: -len(".index")]
    if os.path.isdir(path):
        indexes = sorted(glob.glob(os.path.join(glob.escape(path), "*.index")))
        if len(indexes) != 1:
            raise ValueError(
                f"{path}: expected one checkpoint (*.index file) in the folder, "
                f"found {len(indexes)}; pass the checkpoint prefix, e.g. "
                f"{os.path.join(path, 'model.ckpt')}."
            )
        return indexes[0][: -len(".index")]
    return path


def _scope_of(shapes, origin):
    if _FLOW_SCOPE + _STEM in shapes or any(
        scope + _STEM in shapes and shapes[scope + _STEM][3] == 2 for scope in SCOPES
    ):
        raise ValueError(
            f"{origin}: an I3D flow checkpoint (2-channel TV-L1 optical-flow "
            "inputs); only the RGB stream is supported."
        )
    for scope in SCOPES:
        if scope + _STEM in shapes:
            return scope
    raise ValueError(
        f"{origin}: no '{_STEM}' variable under 'RGB/inception_i3d/' or at the "
        "top level; not a kinetics-i3d checkpoint."
    )


def convert_kinetics_i3d_variables(
    values,
    origin="checkpoint",
    input_shape=(64, 224, 224, 3),
    class_names=None,
    classifier_activation="softmax",
    dropout=0.5,
    scope="",
    other_variables=(),
):
    """`load_kinetics_i3d` for variables already read: `{name: array}` with
    the names inside the model's scope (`Conv3d_1a_7x7/conv_3d/w`, ...)."""
    weights = WeightSource(values, origin)
    for name in values:
        if name.endswith("/Momentum") or name == "global_step":
            weights.ignore(name, "optimizer state")
    bias_name = _LOGITS + "b"
    if bias_name not in values:
        raise ValueError(f"{origin}: no '{bias_name}'; not a kinetics-i3d checkpoint.")
    num_classes = int(np.shape(values[bias_name])[0])
    options = {"batchnorm_epsilon": 1e-3, "logits_pool": [2, 7, 7]}
    model = models.get(
        "i3d",
        num_classes=num_classes,
        input_shape=tuple(input_shape),
        class_regularization=False,
        dropout=dropout,
        classifier_activation=classifier_activation,
        **options,
    )
    _set_weights(model, weights, origin)
    weights.check_all_used()

    if class_names is not None:
        names = [str(name) for name in class_names]
        if len(names) != num_classes:
            raise ValueError(
                f"{len(names)} class names given for a model with {num_classes} classes."
            )
        names_source = "given"
    elif num_classes in (400, 600):
        names = kinetics_class_names(num_classes)
        names_source = (
            f"Kinetics-{num_classes} (kinetics-i3d "
            f"{'label_map.txt' if num_classes == 400 else 'label_map_600.txt'})"
        )
    else:
        names, names_source = None, f"none shipped for {num_classes} classes"
    clip_format = {
        "clip_length": int(input_shape[0]),
        "stride": 1,
        "crop_size": int(input_shape[1]),
        "short_side": int(round(input_shape[1] * 256 / 224)),
        "num_clips": 10,
        "num_crops": 1,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "class_names": names,
    }
    source = {
        "source": "kinetics-i3d",
        "file": origin,
        "format": "TensorFlow checkpoint (Sonnet I3D)",
        "scope": scope,
        "input_convention": "RGB at 25 fps, pixels in [-1, 1] (2 * x / 255 - 1), "
        "short side 256, centre crop 224",
        "class_names_source": names_source,
        "weights": weights.report(),
        "other_variables": list(other_variables),
    }
    source["dropout"] = dropout
    return Pretrained(model, "i3d", options, clip_format, source)


def checkpoint_scope(keras_layer_name):
    """The checkpoint scope of a zoo I3D layer (`..._conv` / `..._bn`).

    >>> checkpoint_scope("Mixed_4b_Branch_1_Conv3d_0b_3x3_conv")
    'Mixed_4b/Branch_1/Conv3d_0b_3x3/conv_3d'
    >>> checkpoint_scope("Mixed_5b_Branch_2_Conv3d_0b_3x3_bn")
    'Mixed_5b/Branch_2/Conv3d_0a_3x3/batch_norm'
    """
    match = re.fullmatch(
        r"(Mixed_\d[a-z])_(Branch_\d)_(\w+)_(conv|bn)|(\w+)_(conv|bn)", keras_layer_name
    )
    if not match:
        raise ValueError(f"The I3D layer '{keras_layer_name}' has no checkpoint scope.")
    if match.group(1):
        unit = f"{match.group(1)}/{match.group(2)}/{match.group(3)}"
        kind = match.group(4)
    else:
        unit, kind = match.group(5), match.group(6)
    unit = _RENAMED.get(unit, unit)
    return f"{unit}/{'conv_3d' if kind == 'conv' else 'batch_norm'}"


def _set_weights(model, weights, origin):
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name == "classifier":
            kernel, bias = layer.weights
            w = weights.take(_LOGITS + "w", (1, 1, 1, *kernel.shape), "the logits")
            b = weights.take(_LOGITS + "b", bias.shape, "the logits")
            set_layer_weights(layer, [w.reshape(kernel.shape), b], origin)
        elif layer.name.endswith("_conv"):
            (kernel,) = layer.weights
            w = weights.take(checkpoint_scope(layer.name) + "/w", kernel.shape, layer.name)
            set_layer_weights(layer, [w], origin)
        elif layer.name.endswith("_bn"):
            scope = checkpoint_scope(layer.name)
            channels = layer.weights[0].shape[0]
            stats = []
            for key in ("beta", "moving_mean", "moving_variance"):
                name = f"{scope}/{key}"
                shape = np.shape(weights.values.get(name, ()))
                if shape not in ((channels,), (1, 1, 1, 1, channels)):
                    shape = (channels,)  # take() names the mismatch
                stats.append(weights.take(name, shape, layer.name).reshape(channels))
            # Sonnet's BatchNorm has no scale: gamma is 1.
            set_layer_weights(layer, [np.ones(channels, np.float32), *stats], origin)
        else:
            raise ValueError(f"{origin}: the Keras layer '{layer.name}' has no I3D counterpart.")
