"""Export a trained model as a versioned SavedModel for TensorFlow Serving.

`export_model` writes one SavedModel that plain TensorFlow (and TF Serving,
which has no Python) loads without this package: the preprocessing runs in
the graph and the class names travel inside it as an asset
(`assets/class_names.txt`). Its signatures:

- `serving_default` (predict): `clips` uint8 `[N, T, H, W, 3]` of any clip
  length and frame size → `probabilities` float32 `[N, K]`, `top_k_indices`
  int32 `[N, k]`, `top_k_scores` float32 `[N, k]`, `top_k_classes` string
  `[N, k]` (`k = min(top_k, K)`). In the graph: the clip is centre-cropped in
  time to the model's `T` frames (or stretched by repeating frames when it is
  shorter), each frame resized so that it covers `H x W` (aspect kept) and
  centre-cropped, then normalised `(x / 255 - mean) / std`.
- `predict_normalized` (predict): `clips` float32 `[N, T, H, W, 3]`, already
  at the model's size and normalised (the model's own input); same outputs.
  Its input shape in `GetModelMetadata` tells clients the model's `T, H, W`.
- `class_names` (predict): `class_index` int32 `[N]` → `class_name` string
  `[N]`, the names of any classes (e.g. of a video-level top-k).
- `classify` (method `tensorflow/serving/classify`, so TF Serving's
  `Classify` RPC works): `inputs` string `[N]`, serialized `tf.train.Example`s
  whose bytes feature `image/encoded` holds the clip's frames in order (JPEG
  or PNG, one value per frame) → `classes` string `[N, k]`, `scores` float32
  `[N, k]`. (TF Serving's `Input` proto carries `tf.Example`s only, so the
  frames are a repeated bytes feature, not a `SequenceExample` feature list.)
- `explain` / `explain_class` (predict, models with Class Regularization
  blocks): `clips` uint8 (and `class_index` int32 `[N]`) → per-block
  class-evidence maps `maps` float32 `[N, B, T, H, W]` in `[0, 1]`, the class
  they are for, each block's own guess, probabilities and names (see
  `keras_classreg.explain.evidence_maps`).

`assets.extra/tf_serving_warmup_requests` holds one warm-up request per
signature in TF Serving's format (a TFRecord file of `PredictionLog`s), which
both TF Serving and `serving.server` replay before serving a version.

More signatures: a *signature builder* is a callable `builder(context) ->
{name: Signature}` taking an `ExportContext`; pass a list of them as
`signature_builders=` (default: `SIGNATURE_BUILDERS`).

Example:

>>> import tempfile
>>> from keras_classreg import models
>>> model = models.get("resnet18_3d", num_classes=3, input_shape=(4, 32, 32, 3))
>>> path = export_version(model, tempfile.mkdtemp(), "tiny", ["a", "b", "c"],
...                       warmup=False)
>>> path.endswith("tiny/1")
True
"""

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_classreg  # noqa: E402,F401  (registers the custom classes)
from keras_classreg import explain as explain_lib  # noqa: E402
from keras_classreg.model import class_regularization_blocks  # noqa: E402
from keras_classreg.folding import fold_class_regularization  # noqa: E402

# the data pipeline's normalisation is the single source of truth
from training.data import DEFAULT_MEAN, DEFAULT_STD  # noqa: E402

SERVING_SIGNATURE = "serving_default"
NORMALIZED_SIGNATURE = "predict_normalized"
CLASS_NAMES_SIGNATURE = "class_names"
CLASSIFY_SIGNATURE = "classify"
EXPLAIN_SIGNATURE = "explain"
EXPLAIN_CLASS_SIGNATURE = "explain_class"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
CLIPS_INPUT = "clips"
CLASSIFY_INPUT = "inputs"
FRAMES_FEATURE = "image/encoded"
CLASS_NAMES_ASSET = "class_names.txt"
WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
DEFAULT_TOP_K = 5


@dataclasses.dataclass(frozen=True)
class Signature:
    """One exported signature: a `tf.function` with an input signature and
    the TF Serving method name it is served under."""

    function: object
    method_name: str = PREDICT_METHOD


@dataclasses.dataclass(frozen=True)
class ExportContext:
    """What a signature builder gets.

    Attributes:
        model: the Keras model (float32 normalised clips → probabilities).
        input_shape: the model's `(T, H, W, 3)`.
        class_names: tuple of the `K` class names.
        top_k: `k` of the top-k outputs (already `min(top_k, K)`).
        preprocess: graph function, uint8 clips `[N, T', H', W', 3]` →
            float32 model input `[N, T, H, W, 3]`.
        class_name_lookup: graph function, int tensor of class indices →
            string tensor of class names (read from the asset).
    """

    model: object
    input_shape: tuple
    class_names: tuple
    top_k: int
    preprocess: object
    class_name_lookup: object


def preprocess_clips(clips, input_shape, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    """uint8 clips of any length and frame size → the model's float input.

    Time: centre crop to `T` frames, or, for shorter clips, frame indices
    `floor(i * t / T)` (each frame repeated). Space: resize (bilinear,
    antialiased, aspect kept) so that the frame covers `H x W`, then centre
    crop; no resize when it already does exactly. Then `(x / 255 - mean) /
    std` per channel. Graph-friendly (used inside the export's signatures).

    Args:
        clips: uint8 tensor `[N, t, h, w, 3]`.
        input_shape: the model's `(T, H, W, 3)`.
        mean, std: 3 floats each, on the `[0, 1]` scale.

    Returns:
        float32 tensor `[N, T, H, W, 3]`.
    """
    length, height, width = (int(d) for d in input_shape[:3])
    clips = tf.convert_to_tensor(clips)
    shape = tf.shape(clips)
    clips = _check_not_empty(clips)
    # Time.
    frames = shape[1]
    start = tf.maximum((frames - length) // 2, 0)
    steps = tf.range(length)
    index = tf.where(frames >= length, start + steps, steps * frames // length)
    clips = tf.gather(clips, index, axis=1)
    # Space.
    h, w = shape[2], shape[3]
    x = tf.reshape(tf.cast(clips, tf.float32), tf.stack([-1, h, w, 3]))
    scale = tf.maximum(height / tf.cast(h, tf.float64),
                       width / tf.cast(w, tf.float64))
    new_h = tf.maximum(height, tf.cast(tf.round(tf.cast(h, tf.float64) * scale), tf.int32))
    new_w = tf.maximum(width, tf.cast(tf.round(tf.cast(w, tf.float64) * scale), tf.int32))
    x = tf.cond(
        tf.logical_and(tf.equal(new_h, h), tf.equal(new_w, w)),
        lambda: x,
        lambda: tf.image.resize(x, tf.stack([new_h, new_w]), antialias=True),
    )
    top, left = (new_h - height) // 2, (new_w - width) // 2
    x = x[:, top:top + height, left:left + width, :]
    x = tf.reshape(x, [-1, length, height, width, 3])
    mean = tf.constant(_three_floats(mean, "mean"), tf.float32)
    std = tf.constant(_three_floats(std, "std", positive=True), tf.float32)
    return (x / 255.0 - mean) / std


def _check_not_empty(clips):
    check = tf.debugging.assert_positive(
        tf.shape(clips)[:4],
        message="`clips` must hold at least one clip of at least one frame "
        "of at least 1x1 pixels (shape [N, T, H, W, 3]); received (N, T, H, W)",
    )
    with tf.control_dependencies([check]):
        return tf.identity(clips)


def prediction_signatures(context):
    """`serving_default` (uint8, any size) and `predict_normalized`."""
    length, height, width = context.input_shape[:3]

    def outputs(x):
        probabilities = tf.cast(context.model(x, training=False), tf.float32)
        scores, indices = tf.math.top_k(probabilities, k=context.top_k)
        return {
            "probabilities": probabilities,
            "top_k_indices": indices,
            "top_k_scores": scores,
            "top_k_classes": context.class_name_lookup(indices),
        }

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, None, 3], tf.uint8, name=CLIPS_INPUT)
    ], autograph=False)
    def serving_default(clips):
        return outputs(context.preprocess(clips))

    @tf.function(input_signature=[
        tf.TensorSpec([None, length, height, width, 3], tf.float32,
                      name=CLIPS_INPUT)
    ], autograph=False)
    def predict_normalized(clips):
        return outputs(_check_not_empty(clips))

    num_classes = len(context.class_names)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.int32, name="class_index")
    ], autograph=False)
    def class_names(class_index):
        check = tf.debugging.assert_equal(
            tf.logical_and(tf.reduce_all(class_index >= 0),
                           tf.reduce_all(class_index < num_classes)),
            True,
            message=f"`class_index` must hold class indices in "
            f"[0, {num_classes})",
        )
        with tf.control_dependencies([check]):
            return {"class_name": context.class_name_lookup(class_index)}

    return {
        SERVING_SIGNATURE: Signature(serving_default),
        NORMALIZED_SIGNATURE: Signature(predict_normalized),
        CLASS_NAMES_SIGNATURE: Signature(class_names),
    }


def classify_signatures(context):
    """`classify`: serialized `tf.train.Example`s of encoded frames."""
    model_clip = tf.TensorSpec(
        [*context.input_shape[:3], 3], tf.float32
    )

    def one_clip(encoded_frames):
        check = tf.debugging.assert_positive(
            tf.size(encoded_frames),
            message=f"A tf.train.Example has no frames in its bytes feature "
            f"'{FRAMES_FEATURE}' (one encoded JPEG/PNG image per frame); "
            "number of frames",
        )
        with tf.control_dependencies([check]):
            frames = tf.map_fn(
                lambda data: tf.io.decode_image(
                    data, channels=3, expand_animations=False
                ),
                encoded_frames,
                fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
            )
        return context.preprocess(frames[tf.newaxis])[0]

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUT)
    ], autograph=False)
    def classify(inputs):
        parsed = tf.io.parse_example(
            inputs, {FRAMES_FEATURE: tf.io.RaggedFeature(tf.string)}
        )
        x = tf.map_fn(one_clip, parsed[FRAMES_FEATURE],
                      fn_output_signature=model_clip)
        probabilities = tf.cast(context.model(x, training=False), tf.float32)
        scores, indices = tf.math.top_k(probabilities, k=context.top_k)
        return {
            "classes": context.class_name_lookup(indices),
            "scores": scores,
        }

    return {CLASSIFY_SIGNATURE: Signature(classify, CLASSIFY_METHOD)}


def explain_signatures(context):
    """`explain` and `explain_class`: per-block class-evidence maps
    (`keras_classreg.explain.evidence_maps`); none for a model without Class
    Regularization blocks."""
    if not class_regularization_blocks(context.model):
        return {}
    compute = explain_lib.evidence_maps(context.model)
    names = tf.constant(explain_lib.block_names(context.model))

    def outputs(clips, class_index=None):
        result = compute(context.preprocess(clips), class_index)
        batch = tf.shape(result["class_index"])[0]
        result["class_name"] = context.class_name_lookup(result["class_index"])
        result["block_class_names"] = context.class_name_lookup(
            result["block_classes"]
        )
        result["block_names"] = tf.tile(names[tf.newaxis], [batch, 1])
        return result

    clips_spec = tf.TensorSpec([None, None, None, None, 3], tf.uint8,
                               name=CLIPS_INPUT)

    @tf.function(input_signature=[clips_spec], autograph=False)
    def explain(clips):
        return outputs(clips)

    num_classes = len(context.class_names)

    @tf.function(input_signature=[
        clips_spec, tf.TensorSpec([None], tf.int32, name="class_index")
    ], autograph=False)
    def explain_class(clips, class_index):
        check = tf.debugging.assert_equal(
            tf.logical_and(
                tf.reduce_all(class_index >= 0),
                tf.reduce_all(class_index < num_classes),
            ),
            True,
            message=f"`class_index` must hold class indices in "
            f"[0, {num_classes}), one per clip",
        )
        same = tf.debugging.assert_equal(
            tf.shape(class_index)[0], tf.shape(clips)[0],
            message="`class_index` must hold one class per clip",
        )
        with tf.control_dependencies([check, same]):
            class_index = tf.identity(class_index)
        return outputs(clips, class_index)

    return {
        EXPLAIN_SIGNATURE: Signature(explain),
        EXPLAIN_CLASS_SIGNATURE: Signature(explain_class),
    }


#: The signature builders `export_model` uses by default, in order.
SIGNATURE_BUILDERS = [
    prediction_signatures,
    classify_signatures,
    explain_signatures,
]


def export_model(
    model,
    export_dir,
    class_names,
    mean=DEFAULT_MEAN,
    std=DEFAULT_STD,
    top_k=DEFAULT_TOP_K,
    signature_builders=None,
    warmup=True,
    fold=True,
):
    """Writes `model` as a self-contained SavedModel in `export_dir`.

    Args:
        model: a Keras model taking normalised float32 clips
            `[N, T, H, W, 3]` (static `T, H, W`) and returning class
            probabilities `[N, K]` (softmax).
        export_dir: a folder that does not exist yet (or is empty).
        class_names: the `K` class names, in class-index order (no newlines).
        mean, std: the normalisation the model was trained with (3 floats
            each, on the `[0, 1]` scale).
        top_k: `k` of the top-k outputs (capped at `K`).
        signature_builders: list of signature builders (see the module
            docstring); default `SIGNATURE_BUILDERS`.
        warmup: write `assets.extra/tf_serving_warmup_requests` (needs
            `tensorflow-serving-api`).
        fold: export the inference copy from
            `keras_classreg.fold_class_regularization` (each Class
            Regularization block holds `W_l = W^T P` instead of its
            projection: same outputs, a smaller SavedModel and faster
            small-batch inference). Ignored for models without blocks;
            `False` exports `model` as it is.

    Returns:
        `export_dir`, as a string.
    """
    export_dir = os.fspath(export_dir)
    if os.path.exists(export_dir) and os.listdir(export_dir):
        raise ValueError(
            f"Invalid value for argument `export_dir`. Expected a new or empty "
            f"folder. Received: export_dir={export_dir!r}, which is not empty."
        )
    input_shape = _model_input_shape(model)
    class_names = _check_class_names(class_names, _num_classes(model))
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(
            "Invalid value for argument `top_k`. Expected a positive int. "
            f"Received: top_k={top_k!r}"
        )
    mean = _three_floats(mean, "mean")
    std = _three_floats(std, "std", positive=True)
    _check_probabilities(model, input_shape)
    if fold and class_regularization_blocks(model):
        model = fold_class_regularization(model)

    builders = SIGNATURE_BUILDERS if signature_builders is None else signature_builders
    with tempfile.TemporaryDirectory() as scratch:
        names_file = os.path.join(scratch, CLASS_NAMES_ASSET)
        with open(names_file, "w", encoding="utf-8") as handle:
            handle.write("".join(name + "\n" for name in class_names))
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                names_file,
                tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value="",
        )
        context = ExportContext(
            model=model,
            input_shape=input_shape,
            class_names=tuple(class_names),
            top_k=min(top_k, len(class_names)),
            preprocess=lambda clips: preprocess_clips(
                clips, input_shape, mean, std
            ),
            class_name_lookup=lambda index: table.lookup(
                tf.cast(index, tf.int64)
            ),
        )
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
        if SERVING_SIGNATURE not in signatures:
            raise ValueError(
                f"No signature builder defines {SERVING_SIGNATURE!r}, which "
                "TF Serving uses when a request names no signature."
            )
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.track(table)
        for name, signature in signatures.items():
            archive.add_endpoint(name, signature.function)
        archive.write_out(export_dir, verbose=False)

    custom = {n: s.method_name for n, s in signatures.items()
              if s.method_name != PREDICT_METHOD}
    if custom:
        _set_method_names(export_dir, custom)
    if warmup:
        write_warmup_requests(export_dir, input_shape, signatures)
    return export_dir


def export_version(model, export_base, name, class_names, version=None,
                   **kwargs):
    """Exports to `export_base/name/version/`, atomically.

    The SavedModel is written to a hidden sibling folder and renamed into
    place, so a server watching `export_base/name` never sees a half-written
    version.

    Args:
        model, class_names, **kwargs: as for `export_model`.
        export_base: the model base folder's parent (`MODEL_BASE_PATH`).
        name: the model name (a folder name: letters, digits, `._-`).
        version: a positive int, or `None` for the next free number.

    Returns:
        the version folder, as a string.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name) \
            or name in (".", ".."):
        raise ValueError(
            "Invalid value for argument `name`. Expected a model name made of "
            f"letters, digits, '.', '_' or '-'. Received: name={name!r}"
        )
    base = os.path.join(os.fspath(export_base), name)
    os.makedirs(base, exist_ok=True)
    if version is None:
        version = next_version(base)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            "Invalid value for argument `version`. Expected a positive int. "
            f"Received: version={version!r}"
        )
    target = os.path.join(base, str(version))
    if os.path.exists(target):
        raise ValueError(
            f"Version {version} of model {name!r} already exists at {target}; "
            "versions are immutable (TF Serving may be serving it). Pick "
            "another --version or leave it out for the next free number."
        )
    scratch = tempfile.mkdtemp(prefix=f".{version}.partial-", dir=base)
    try:
        export_model(model, os.path.join(scratch, "saved_model"), class_names,
                     **kwargs)
        os.rename(os.path.join(scratch, "saved_model"), target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def next_version(model_base):
    """1 + the largest numeric version folder in `model_base` (1 if none)."""
    versions = [int(entry) for entry in _listdir(model_base)
                if entry.isdigit()]
    return max(versions, default=0) + 1


def read_class_names(path):
    """Class names from a text file (one per line) or a JSON list."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith(".json"):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from error
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(
                f"{path}: expected a JSON list of class-name strings."
            )
        return names
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    for number, line in enumerate(names, start=1):
        if not line:
            raise ValueError(
                f"{path}, line {number}: empty class name (expected one class "
                "name per line, in class-index order)."
            )
    return names


def export_from_files(model_path, export_base, name, config_path=None,
                      class_names_path=None, version=None,
                      top_k=DEFAULT_TOP_K, warmup=True, fold=True):
    """Loads a training run's model (and its `config.json`) and exports it.

    Args:
        model_path: a `.keras` file (e.g. `RUN_DIR/best.keras` or
            `RUN_DIR/checkpoints/epoch_005.keras`), a `.weights.h5` file
            (then the config's `model`, `input_shape` and class names
            rebuild the network), or a run directory (its `best.keras`, else
            `final.keras`).
        config_path: the run's `config.json`; default: the one beside the
            model or in the folder above it (a run directory), when present.
            Read: `class_names`, `mean`, `std`, `model`, `input_shape` (and
            the model options it records).
        class_names_path: class names file (one per line, or a JSON list);
            overrides the config's.

    Returns:
        the version folder written.
    """
    model_path = os.fspath(model_path)
    if os.path.isdir(model_path):
        model_path = _run_model(model_path)
    if config_path is None:
        folder = os.path.dirname(os.path.abspath(model_path))
        candidates = [os.path.join(folder, "config.json"),
                      os.path.join(os.path.dirname(folder), "config.json")]
        config_path = next((c for c in candidates if os.path.isfile(c)), None)
    config = _read_config(config_path) if config_path else {}
    if class_names_path is not None:
        class_names = read_class_names(class_names_path)
    elif "class_names" in config:
        class_names = config["class_names"]
    else:
        raise ValueError(
            "No class names: pass --class-names FILE (one name per line) or "
            "--config with a `class_names` list"
            + (f" ({config_path} has none)." if config_path else
               f" (no config.json beside {model_path} or above it).")
        )
    model = _load_model(model_path, config, config_path, len(class_names))
    return export_version(
        model, export_base, name, class_names, version=version,
        mean=config.get("mean", DEFAULT_MEAN),
        std=config.get("std", DEFAULT_STD), top_k=top_k, warmup=warmup,
        fold=fold,
    )


def write_warmup_requests(export_dir, input_shape, signatures):
    """Writes TF Serving warm-up requests (one per signature) into
    `export_dir/assets.extra/tf_serving_warmup_requests`."""
    try:
        from tensorflow_serving.apis import (
            classification_pb2, predict_pb2, prediction_log_pb2,
        )
    except ImportError as error:
        raise ImportError(
            "Writing warm-up requests needs tensorflow-serving-api "
            "(`pip install keras-classreg[serve]`); or export without them "
            "(--no-warmup / warmup=False)."
        ) from error
    length, height, width = input_shape[:3]
    logs = []
    for name, signature in signatures.items():
        if signature.method_name == CLASSIFY_METHOD:
            request = classification_pb2.ClassificationRequest()
            request.model_spec.signature_name = name
            request.input.example_list.examples.append(
                clip_example(np.zeros((length, height, width, 3), np.uint8))
            )
            logs.append(prediction_log_pb2.PredictionLog(
                classify_log=prediction_log_pb2.ClassifyLog(request=request)))
            continue
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = name
        spec = signature.function.input_signature
        for tensor_spec in spec:
            shape = [1 if dim is None else dim for dim in tensor_spec.shape]
            if tensor_spec.name == CLIPS_INPUT and tensor_spec.shape[1] is None:
                shape = [1, length, height, width, 3]
            value = np.zeros(shape, tensor_spec.dtype.as_numpy_dtype)
            request.inputs[tensor_spec.name].CopyFrom(
                tf.make_tensor_proto(value))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))
    path = os.path.join(export_dir, WARMUP_PATH)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def clip_example(frames, quality=95):
    """A `tf.train.Example` for the `classify` signature: the uint8 frames
    `[T, H, W, 3]` JPEG-encoded, in order, in the bytes feature
    `image/encoded`."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            "Invalid value for argument `frames`. Expected uint8 frames "
            f"[T, H, W, 3]. Received: dtype={frames.dtype}, "
            f"shape={frames.shape}"
        )
    encoded = [tf.io.encode_jpeg(frame, quality=quality).numpy()
               for frame in frames]
    return tf.train.Example(features=tf.train.Features(feature={
        FRAMES_FEATURE: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=encoded))
    }))


# ----------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------
def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _model_input_shape(model):
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
    if len(shape) != 4 or shape[-1] != 3 or any(d is None for d in shape):
        raise ValueError(
            f"Model '{model.name}' must take clips of a fixed shape "
            f"(N, T, H, W, 3); its input shape is (N, {', '.join(map(str, shape))})."
        )
    return tuple(int(d) for d in shape)


def _num_classes(model):
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"Model '{model.name}' must output class probabilities [N, K]; "
            f"its output shape is {shape}."
        )
    return int(shape[-1])


def _check_class_names(class_names, num_classes):
    names = list(class_names)
    if len(names) != num_classes:
        raise ValueError(
            f"Invalid value for argument `class_names`. Expected "
            f"{num_classes} names (the model has {num_classes} classes). "
            f"Received {len(names)} names."
        )
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name or "\n" in name or "\r" in name:
            raise ValueError(
                "Invalid value for argument `class_names`. Expected non-empty "
                f"strings without line breaks. Received: class_names[{index}]"
                f"={name!r}"
            )
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(
            "Invalid value for argument `class_names`. Expected distinct "
            f"names. Received duplicates: {duplicates}"
        )
    return names


def _three_floats(values, argument, positive=False):
    try:
        floats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        floats = ()
    if len(floats) != 3 or (positive and min(floats) <= 0):
        expected = "3 positive floats" if positive else "3 floats"
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected {expected} "
            f"(one per RGB channel). Received: {argument}={values!r}"
        )
    return floats


def _check_probabilities(model, input_shape):
    sample = np.zeros((1, *input_shape), np.float32)
    output = np.asarray(model(sample, training=False), np.float64)
    if np.any(output < -1e-6) or abs(output.sum() - 1.0) > 1e-3:
        raise ValueError(
            f"Model '{model.name}' does not output class probabilities: its "
            f"outputs sum to {output.sum():.4f} for one clip. The export "
            "expects softmax probabilities (a Dense `classifier` with "
            "activation='softmax' as the last layer)."
        )


def _set_method_names(export_dir, method_names):
    updater = tf.compat.v1.saved_model.signature_def_utils.MethodNameUpdater(
        export_dir)
    for name, method in method_names.items():
        updater.replace_method_name(signature_key=name, method_name=method,
                                    tags="serve")
    updater.save()
    # Keep fingerprint.pb consistent with the rewritten saved_model.pb, as
    # `tf.saved_model.save` itself writes it.
    from tensorflow.python.saved_model import fingerprinting_utils

    fingerprinting_utils.write_fingerprint(export_dir)


def _read_config(path):
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError as error:
        raise ValueError(f"Config file not found: {path}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object of run settings.")
    return config


def _run_model(run_dir):
    for name in ("best.keras", "final.keras"):
        if os.path.isfile(os.path.join(run_dir, name)):
            return os.path.join(run_dir, name)
    raise ValueError(f"{run_dir} is a folder without best.keras or "
                     "final.keras; pass the model file with --model.")


def _load_model(model_path, config, config_path, num_classes):
    if not os.path.isfile(model_path):
        raise ValueError(f"Model file not found: {model_path}")
    if model_path.endswith(".keras"):
        try:
            return keras.saving.load_model(model_path, compile=False)
        except Exception as error:  # noqa: BLE001 (re-raised with the file)
            raise ValueError(
                f"Could not load the Keras model {model_path}: {error}"
            ) from error
    if model_path.endswith(".weights.h5"):
        missing = [key for key in ("model", "input_shape") if key not in config]
        if missing:
            raise ValueError(
                f"Exporting weights ({model_path}) needs the run's config to "
                f"rebuild the network; {config_path or 'no config.json'} lacks "
                f"{', '.join(repr(m) for m in missing)}."
            )
        from training.train import resolve_model_builder

        options = {key: config[key] for key in (
            "class_regularization", "affection_rates", "dropout",
            "class_regularization_options") if config.get(key) is not None}
        options.update(config.get("model_options") or {})  # the architecture
        builder = resolve_model_builder(config["model"])  # zoo or 'mod:fn'
        model = builder(num_classes=num_classes,
                        input_shape=tuple(config["input_shape"]), **options)
        model.load_weights(model_path)
        return model
    raise ValueError(
        f"Unsupported model file {model_path}: expected a `.keras` model or "
        "a `.weights.h5` checkpoint (with the run's config.json)."
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m training.export",
        description=(
            "Export a trained model as a versioned SavedModel, "
            "EXPORT_BASE/NAME/VERSION/, ready for TensorFlow Serving or "
            "`python -m serving.server`. Signatures: serving_default (uint8 "
            "clips of any size -> probabilities and top-k class names), "
            "predict_normalized, class_names, classify (tf.Examples of JPEG frames) and, "
            "for Class Regularization models, explain / explain_class. The "
            "class names, the resizing and the normalisation live inside "
            "the SavedModel: copying the version folder is enough."
        ),
        epilog=(
            "Example: python -m training.export --model runs/a/best.keras "
            "--export-base exports --name classreg"
        ),
    )
    parser.add_argument("--model", required=True,
                        help="The trained model: a .keras file (e.g. "
                        "RUN_DIR/best.keras, RUN_DIR/checkpoints/"
                        "epoch_005.keras), a .weights.h5 checkpoint (needs "
                        "the run's config.json), or a run directory (its "
                        "best.keras, else final.keras).")
    parser.add_argument("--config", default=None,
                        help="The run's config.json (class_names, mean, std, "
                        "model, input_shape). Default: config.json beside "
                        "--model or in the folder above it, if present.")
    parser.add_argument("--class-names", default=None,
                        help="Class names file, one per line in class-index "
                        "order (or a JSON list); overrides the config's.")
    parser.add_argument("--export-base", required=True,
                        help="Folder holding one sub-folder per model name "
                        "(TF Serving's MODEL_BASE_PATH).")
    parser.add_argument("--name", required=True,
                        help="Model name: the sub-folder and the name clients "
                        "request (TF Serving's MODEL_NAME).")
    parser.add_argument("--version", type=int, default=None,
                        help="Version number (default: the next free one). "
                        "A running server picks up the new version and "
                        "swaps it in.")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                        help="How many top classes the signatures return "
                        "(capped at the number of classes). Default: "
                        f"{DEFAULT_TOP_K}.")
    parser.add_argument("--no-warmup", action="store_true",
                        help="Do not write assets.extra/"
                        "tf_serving_warmup_requests.")
    parser.add_argument("--no-fold", action="store_true",
                        help="Export the Class Regularization blocks as "
                        "trained (projection + classifier kernel) instead of "
                        "folded (each block holds its class weights W_l = "
                        "W^T P; same outputs, smaller and faster at small "
                        "batches). Default: fold.")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        path = export_from_files(
            args.model, args.export_base, args.name, config_path=args.config,
            class_names_path=args.class_names, version=args.version,
            top_k=args.top_k, warmup=not args.no_warmup,
            fold=not args.no_fold)
    except (ValueError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
