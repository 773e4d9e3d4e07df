"""Folding the class weights of every block for inference.

A trainable block computes its class scores as `z = (a P^T) W` and the
chosen class's weights as `W[:, k*]^T P`: cheap in FLOPs, but at batch 1
each call streams the whole projection `P` (`[C_f, C_l]`, 31 MB over the
four blocks of ResNet-50-3D) twice through memory. Once training is over,
`W_l = W^T P` is a constant (`[K, C_l]`, 6 MB for K = 400), so an inference
copy of the model can hold it instead: same outputs, a fifth of the bytes.
"""

import keras

from keras_classreg.classreg_model import class_regularization_blocks, wire_classifiers
from keras_classreg.layers.class_regularization import ClassRegularization
from keras_classreg.layers.folded_class_regularization import FoldedClassRegularization


def fold_class_regularization(model):
    """An inference copy of `model` whose blocks hold `W_l = W^T P (+ b)`.

    Every `ClassRegularization` block of the copy is a
    `FoldedClassRegularization` block: it stores its class weights as a
    fixed weight and reads neither its projection nor the classifier kernel. All other
    layers are re-created from their configs and get copies of their
    weights, so training `model` afterwards does not change the copy (fold
    again after training). The copy's outputs equal `model`'s up to float32
    rounding (the products are only re-associated). Blocks that are
    already folded stay as they are.

    Args:
        model: a functional or Sequential Keras model with
            `ClassRegularization` blocks (nested functional sub-models are
            folded too), blocks wired to their classifier.

    Returns:
        a new model of the same class, for inference and export; it saves
        and loads like any model of this package.

    Example:

    >>> import numpy as np
    >>> from keras_classreg import models, fold_class_regularization
    >>> model = models.get("resnet18_3d", num_classes=5, input_shape=(4, 32, 32, 3))
    >>> folded = fold_class_regularization(model)
    >>> x = np.random.rand(2, 4, 32, 32, 3).astype("float32")
    >>> bool(np.allclose(model(x), folded(x), atol=1e-5))
    True
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Invalid value for argument `model`. Expected a `keras.Model`. "
            f"Received: model={model!r}"
        )
    blocks = class_regularization_blocks(model)
    if not blocks:
        raise ValueError(f"Model '{model.name}' has no ClassRegularization blocks to fold.")
    weights = {}  # id(original block) -> its W_l as a NumPy array
    for block in blocks:
        if isinstance(block, ClassRegularization):
            block._require_classifier()  # a clear error if not wired
        weights[id(block)] = keras.ops.convert_to_numpy(block.class_weights())

    pairs = []  # (original, copy)

    def clone(layer):
        if isinstance(layer, ClassRegularization):
            copy = FoldedClassRegularization(
                num_classes=int(weights[id(layer)].shape[0]),
                affection_rate=layer.affection_rate,
                classifier=layer.classifier_name,
                normalization_range=layer.normalization_range,
                name=layer.name,
                dtype=layer.dtype_policy,
                trainable=False,
            )
        else:
            copy = layer.__class__.from_config(layer.get_config())
        pairs.append((layer, copy))
        return copy

    try:
        folded = keras.models.clone_model(model, clone_function=clone, recursive=True)
    except ValueError as error:
        raise ValueError(
            f"Cannot fold model '{model.name}': {error} Folding re-creates the "
            "model from its layers' configs, so it needs a functional or "
            "Sequential model."
        ) from error
    for original, copy in pairs:
        if isinstance(copy, keras.Model):
            continue  # nested models: their layers are copied one by one
        if isinstance(copy, FoldedClassRegularization):
            copy.folded_class_weights.assign(weights[id(original)])
        else:
            copy.set_weights(original.get_weights())
    return wire_classifiers(folded)
