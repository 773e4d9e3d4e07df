"""`export_model`: a Keras model → one self-contained SavedModel.

Plain TensorFlow (and TF Serving, which has no Python) loads it without
this package: the preprocessing runs in the graph, and the class names
(`assets/class_names.txt`) and the clip format (`assets/clip_format.json`,
also the `clip_format` signature) travel inside it.
"""

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from clipspec import signatures as names
from clipspec import views
from clipspec.format import ClipFormat
from keras_classreg.classreg_model import class_regularization_blocks
from keras_classreg.explanations import DEFAULT_METHOD
from keras_classreg.folding import fold_class_regularization
from training.export.signatures import (
    PREDICT_METHOD,
    SIGNATURE_BUILDERS,
    ExportContext,
    Signature,
)
from training.export.warmup import write_warmup_requests


def export_model(
    model,
    export_dir,
    clip_format,
    top_k=names.DEFAULT_TOP_K,
    signature_builders=None,
    warmup=True,
    fold=True,
    explanation_method=DEFAULT_METHOD,
):
    """Writes `model` as a self-contained SavedModel in `export_dir`.

    Args:
        model: a Keras model taking normalised float32 clips
            `[N, T, S, S, 3]` and returning class probabilities `[N, K]`
            (softmax).
        export_dir: a folder that does not exist yet (or is empty).
        clip_format: the model's `clipspec.ClipFormat`; its clip length and
            crop size must match the model's input, and it must name the
            model's `K` classes.
        top_k: `k` of the top-k outputs (capped at `K`).
        signature_builders: list of signature builders (see
            `training.export.signatures`); default `SIGNATURE_BUILDERS`.
        warmup: write `assets.extra/tf_serving_warmup_requests` (needs
            `tensorflow-serving-api`).
        fold: export the inference copy from
            `keras_classreg.fold_class_regularization` (same outputs, a
            smaller SavedModel and faster small-batch inference). Ignored
            for models without blocks; `False` exports `model` as it is.
        explanation_method: the `keras_classreg.explanations` method of the
            `explain` signatures.

    Returns:
        `export_dir`, as a string.
    """
    export_dir = os.fspath(export_dir)
    if os.path.exists(export_dir) and os.listdir(export_dir):
        raise ValueError(
            f"Invalid value for argument `export_dir`. Expected a new or empty "
            f"folder. Received: export_dir={export_dir!r}, which is not empty."
        )
    if not isinstance(clip_format, ClipFormat):
        raise TypeError(
            "Invalid value for argument `clip_format`. Expected a "
            f"clipspec.ClipFormat. Received: {clip_format!r}"
        )
    _check_model(model, clip_format)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(
            "Invalid value for argument `top_k`. Expected a "
            f"positive int. Received: top_k={top_k!r}"
        )
    if fold and class_regularization_blocks(model):
        model = fold_class_regularization(model)

    builders = SIGNATURE_BUILDERS if signature_builders is None else signature_builders
    with tempfile.TemporaryDirectory() as scratch:
        names_file = os.path.join(scratch, names.CLASS_NAMES_ASSET)
        with open(names_file, "w", encoding="utf-8") as handle:
            handle.write("".join(name + "\n" for name in clip_format.class_names))
        format_file = os.path.join(scratch, names.CLIP_FORMAT_ASSET)
        with open(format_file, "w", encoding="utf-8") as handle:
            # one line: the asset is read through a line-number table (the
            # SavedModel keeps assets that a tracked resource reads)
            handle.write(json.dumps(clip_format.to_dict(), ensure_ascii=False) + "\n")
        table = _line_table(names_file)
        format_table = _line_table(format_file)
        context = ExportContext(
            model=model,
            clip_format=clip_format,
            top_k=min(top_k, clip_format.num_classes),
            preprocess=lambda clips: views.preprocess_clips(clips, clip_format),
            class_name_lookup=lambda index: table.lookup(tf.cast(index, tf.int64)),
            explanation_method=explanation_method,
            read_clip_format=lambda: format_table.lookup(tf.constant(0, tf.int64)),
        )
        signatures = _collect(builders, context)
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.track(table)
        archive.track(format_table)
        for name, signature in signatures.items():
            archive.add_endpoint(name, signature.function)
        archive.write_out(export_dir, verbose=False)

    custom = {n: s.method_name for n, s in signatures.items() if s.method_name != PREDICT_METHOD}
    if custom:
        _set_method_names(export_dir, custom)
    if warmup:
        write_warmup_requests(export_dir, clip_format, signatures)
    return export_dir


def _line_table(path):
    """A table line number → line of a text file, which the SavedModel
    carries as an asset."""
    return tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            path,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )


def _collect(builders, context):
    signatures = {}
    for builder in builders:
        for name, signature in builder(context).items():
            if name in signatures:
                raise ValueError(
                    f"Two signature builders define the signature "
                    f"{name!r} (the second is {builder!r})."
                )
            if not isinstance(signature, Signature):
                signature = Signature(signature)
            signatures[name] = signature
    if names.SERVING not in signatures:
        raise ValueError(
            f"No signature builder defines {names.SERVING!r}, which "
            "TF Serving uses when a request names no signature."
        )
    return signatures


def _check_model(model, clip_format):
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
    if shape != clip_format.input_shape:
        raise ValueError(
            f"Model '{model.name}' takes clips of shape (N, "
            f"{', '.join(map(str, shape))}), but its clip format says "
            f"{clip_format.input_shape} (clip_length={clip_format.clip_length}, "
            f"crop_size={clip_format.crop_size})."
        )
    output = tuple(model.outputs[0].shape)
    if len(output) != 2 or output[-1] is None:
        raise ValueError(
            f"Model '{model.name}' must output class probabilities "
            f"[N, K]; its output shape is {output}."
        )
    if output[-1] != clip_format.num_classes:
        raise ValueError(
            f"Model '{model.name}' has {output[-1]} classes but its clip format "
            f"names {clip_format.num_classes}: {list(clip_format.class_names)[:5]}..."
        )
    sample = np.zeros((1, *shape), np.float32)
    probabilities = np.asarray(model(sample, training=False), np.float64)
    if np.any(probabilities < -1e-6) or abs(probabilities.sum() - 1.0) > 1e-3:
        raise ValueError(
            f"Model '{model.name}' does not output class probabilities: its "
            f"outputs sum to {probabilities.sum():.4f} for one clip. The export "
            "expects softmax probabilities (a Dense `classifier` with "
            "activation='softmax' as the last layer)."
        )


def _set_method_names(export_dir, method_names):
    updater = tf.compat.v1.saved_model.signature_def_utils.MethodNameUpdater(export_dir)
    for name, method in method_names.items():
        updater.replace_method_name(signature_key=name, method_name=method, tags="serve")
    updater.save()
    # Keep fingerprint.pb consistent with the rewritten saved_model.pb, as
    # `tf.saved_model.save` itself writes it.
    from tensorflow.python.saved_model import fingerprinting_utils

    fingerprinting_utils.write_fingerprint(export_dir)
