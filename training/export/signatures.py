"""The signatures an export offers, built by *signature builders*.

A signature builder is a callable `builder(context) -> {name: Signature}`
taking an `ExportContext`; `export_model` calls every builder of its list
(default `SIGNATURE_BUILDERS`) and exports the union. Names and files are
the contract of `clipspec.signatures`; standard names and method names
come from `tf.saved_model`.
"""

import dataclasses

import tensorflow as tf

from clipspec import signatures as names
from keras_classreg import explanations
from keras_classreg.classreg_model import class_regularization_blocks

PREDICT_METHOD = tf.saved_model.PREDICT_METHOD_NAME
CLASSIFY_METHOD = tf.saved_model.CLASSIFY_METHOD_NAME


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
        clip_format: the model's `clipspec.ClipFormat` (clip length, crop
            size, normalisation, class names, ...).
        top_k: `k` of the top-k outputs (already `min(top_k, K)`).
        preprocess: graph function, uint8 clips `[N, T', H', W', 3]` →
            float32 model input `[N, T, S, S, 3]`
            (`clipspec.views.preprocess_clips`).
        class_name_lookup: graph function, int tensor of class indices →
            string tensor of class names (read from the asset).
        explanation_method: name of the `keras_classreg.explanations`
            method the `explain` signatures use.
        read_clip_format: graph function, no argument → string scalar, the
            clip format JSON (read from the SavedModel's asset).
    """

    model: object
    clip_format: object
    top_k: int
    preprocess: object
    class_name_lookup: object
    explanation_method: str = explanations.DEFAULT_METHOD
    read_clip_format: object = None

    @property
    def num_classes(self):
        return len(self.clip_format.class_names)


def _check_class_index(class_index, num_classes, what):
    check = tf.debugging.assert_equal(
        tf.logical_and(tf.reduce_all(class_index >= 0), tf.reduce_all(class_index < num_classes)),
        True,
        message=f"`class_index` must hold class indices in [0, {num_classes}){what}",
    )
    with tf.control_dependencies([check]):
        return tf.identity(class_index)


def prediction_signatures(context):
    """`serving_default` (uint8 clips of any size), `predict_normalized`,
    `class_names` and `clip_format`."""
    length, size = context.clip_format.clip_length, context.clip_format.crop_size

    def outputs(x):
        probabilities = tf.cast(context.model(x, training=False), tf.float32)
        scores, indices = tf.math.top_k(probabilities, k=context.top_k)
        return {
            names.PROBABILITIES_OUTPUT: probabilities,
            names.TOP_K_INDICES_OUTPUT: indices,
            names.TOP_K_SCORES_OUTPUT: scores,
            names.TOP_K_CLASSES_OUTPUT: context.class_name_lookup(indices),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, None, 3], tf.uint8, name=names.CLIPS_INPUT)
        ],
        autograph=False,
    )
    def serving_default(clips):
        return outputs(context.preprocess(clips))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, length, size, size, 3], tf.float32, name=names.CLIPS_INPUT)
        ],
        autograph=False,
    )
    def predict_normalized(clips):
        check = tf.debugging.assert_positive(
            tf.shape(clips)[0], message="`clips` must hold at least one clip"
        )
        with tf.control_dependencies([check]):
            return outputs(tf.identity(clips))

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.int32, name=names.CLASS_INDEX_INPUT)],
        autograph=False,
    )
    def class_names(class_index):
        class_index = _check_class_index(class_index, context.num_classes, "")
        return {names.CLASS_NAME_OUTPUT: context.class_name_lookup(class_index)}

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.int32, name=names.CLIP_FORMAT_QUERY_INPUT)],
        autograph=False,
    )
    def clip_format(query):
        # One answer per query entry: TF Serving's REST API calls no
        # signature without inputs, and its row format needs a batch axis.
        text = context.read_clip_format()
        return {names.CLIP_FORMAT_OUTPUT: tf.fill(tf.shape(query)[:1], text)}

    return {
        names.SERVING: Signature(serving_default),
        names.PREDICT_NORMALIZED: Signature(predict_normalized),
        names.CLASS_NAMES: Signature(class_names),
        names.CLIP_FORMAT: Signature(clip_format),
    }


def classify_signatures(context):
    """`classify`: serialized `tf.train.Example`s of encoded frames."""
    model_clip = tf.TensorSpec(list(context.clip_format.input_shape), tf.float32)

    def one_clip(encoded_frames):
        check = tf.debugging.assert_positive(
            tf.size(encoded_frames),
            message=f"A tf.train.Example has no frames in its bytes feature "
            f"'{names.FRAMES_FEATURE}' (one encoded JPEG/PNG image per frame); "
            "number of frames",
        )
        with tf.control_dependencies([check]):
            frames = tf.map_fn(
                lambda data: tf.io.decode_image(data, channels=3, expand_animations=False),
                encoded_frames,
                fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
            )
        return context.preprocess(frames[tf.newaxis])[0]

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=tf.saved_model.CLASSIFY_INPUTS)],
        autograph=False,
    )
    def classify(inputs):
        parsed = tf.io.parse_example(inputs, {names.FRAMES_FEATURE: tf.io.RaggedFeature(tf.string)})
        x = tf.map_fn(one_clip, parsed[names.FRAMES_FEATURE], fn_output_signature=model_clip)
        probabilities = tf.cast(context.model(x, training=False), tf.float32)
        scores, indices = tf.math.top_k(probabilities, k=context.top_k)
        return {
            tf.saved_model.CLASSIFY_OUTPUT_CLASSES: context.class_name_lookup(indices),
            tf.saved_model.CLASSIFY_OUTPUT_SCORES: scores,
        }

    return {names.CLASSIFY: Signature(classify, CLASSIFY_METHOD)}


def explain_signatures(context):
    """`explain` and `explain_class`: per-block class-evidence maps of the
    context's explanation method; none for a model without Class
    Regularization blocks."""
    if not class_regularization_blocks(context.model):
        return {}
    method = explanations.get(context.explanation_method)
    compute = explanations.evidence_maps(context.model, method.name)
    block_names = tf.constant(explanations.block_names(context.model))

    def outputs(clips, class_index=None):
        result = compute(context.preprocess(clips), class_index)
        batch = tf.shape(result["class_index"])[0]
        result[names.CLASS_NAME_OUTPUT] = context.class_name_lookup(result["class_index"])
        result[names.BLOCK_CLASS_NAMES_OUTPUT] = context.class_name_lookup(result["block_classes"])
        result[names.BLOCK_NAMES_OUTPUT] = tf.tile(block_names[tf.newaxis], [batch, 1])
        return result

    clips_spec = tf.TensorSpec([None, None, None, None, 3], tf.uint8, name=names.CLIPS_INPUT)

    @tf.function(input_signature=[clips_spec], autograph=False)
    def explain(clips):
        return outputs(clips)

    @tf.function(
        input_signature=[clips_spec, tf.TensorSpec([None], tf.int32, name=names.CLASS_INDEX_INPUT)],
        autograph=False,
    )
    def explain_class(clips, class_index):
        class_index = _check_class_index(class_index, context.num_classes, ", one per clip")
        same = tf.debugging.assert_equal(
            tf.shape(class_index)[0],
            tf.shape(clips)[0],
            message="`class_index` must hold one class per clip",
        )
        with tf.control_dependencies([same]):
            class_index = tf.identity(class_index)
        return outputs(clips, class_index)

    return {
        names.EXPLAIN: Signature(explain),
        names.EXPLAIN_CLASS: Signature(explain_class),
    }


#: The signature builders `export_model` uses by default, in order.
SIGNATURE_BUILDERS = (
    prediction_signatures,
    classify_signatures,
    explain_signatures,
)
