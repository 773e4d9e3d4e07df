"""One signature of a loaded SavedModel, and TensorFlow's own names for
signatures, their methods and tensors (TensorFlow's `signature_constants`,
which TF Serving uses).

A `Signature` holds the `SignatureDef` of `saved_model.pb`, the function
that runs it (a TF2 concrete function or a TF1 Session call, see
`serving.servable`) and, with batching on, its `serving.batching.Batcher`.
"""

import dataclasses

import tensorflow as tf

from serving.errors import invalid_argument

# TensorFlow's own names for signatures and their methods and tensors.
DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
PREDICT_METHOD = tf.saved_model.PREDICT_METHOD_NAME
CLASSIFY_METHOD = tf.saved_model.CLASSIFY_METHOD_NAME
REGRESS_METHOD = tf.saved_model.REGRESS_METHOD_NAME
CLASSIFY_INPUTS = tf.saved_model.CLASSIFY_INPUTS
CLASSIFY_CLASSES = tf.saved_model.CLASSIFY_OUTPUT_CLASSES
CLASSIFY_SCORES = tf.saved_model.CLASSIFY_OUTPUT_SCORES
REGRESS_INPUTS = tf.saved_model.REGRESS_INPUTS
REGRESS_OUTPUTS = tf.saved_model.REGRESS_OUTPUTS
INIT_OP_SIGNATURE = "__saved_model_init_op"  # TF2 exports list it, as TF Serving


@dataclasses.dataclass
class Signature:
    """One signature of a loaded version: `name`, its `SignatureDef`
    (`definition`), the callable that runs it (`function(values, outputs,
    context)`) and its batcher (None: unbatched)."""

    name: str
    definition: object  # the SignatureDef
    function: object  # the loaded concrete function
    batcher: object = None

    @property
    def method_name(self):
        return self.definition.method_name

    @property
    def inputs(self):
        return self.definition.inputs

    @property
    def outputs(self):
        return self.definition.outputs


def signature_input(signature):
    """The alias of a signature's (first) input."""
    return next(iter(signature.inputs))


def input_infos(signature_defs, signature_name):
    """The input `TensorInfo` map of a signature of `signature_defs` (REST
    uses it to type JSON values); INVALID_ARGUMENT if there is no such
    signature."""
    key = signature_name or DEFAULT_SIGNATURE
    if key not in signature_defs:
        raise invalid_argument(f'Serving signature name: "{key}" not found in signature def')
    return signature_defs[key].inputs


__all__ = [
    "CLASSIFY_CLASSES",
    "CLASSIFY_INPUTS",
    "CLASSIFY_METHOD",
    "CLASSIFY_SCORES",
    "DEFAULT_SIGNATURE",
    "INIT_OP_SIGNATURE",
    "PREDICT_METHOD",
    "REGRESS_INPUTS",
    "REGRESS_METHOD",
    "REGRESS_OUTPUTS",
    "Signature",
    "input_infos",
    "signature_input",
]
