"""`ClassRegModel`: a functional Keras model that re-wires its blocks on load."""

import keras

from keras_classreg.layers.class_regularization_base import ClassRegularizationBase


def class_regularization_blocks(model):
    """All Class Regularization layers of `model` (trainable and folded), in
    graph order."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, ClassRegularizationBase)
    ]


def wire_classifiers(model):
    """Points every block of `model` at the classifier its config names.

    A block's config stores its classifier by layer name (a config cannot
    hold a live variable). After loading a model that is a plain
    `keras.Model`, call this once; `ClassRegModel` does it for you.

    Returns:
        the model, for chaining.
    """
    for block in class_regularization_blocks(model):
        if block.get_classifier() is not None:
            continue
        name = block.classifier_name
        if name is None:
            raise ValueError(
                f"{type(block).__name__} layer '{block.name}' names no classifier "
                "to wire; attach one with `block.attach(dense)`."
            )
        try:
            classifier = model.get_layer(name)
        except ValueError as error:
            raise ValueError(
                f"{type(block).__name__} layer '{block.name}' refers to the "
                f"classifier '{name}', but model '{model.name}' has no layer "
                "of that name."
            ) from error
        block.attach(classifier)
    return model


@keras.saving.register_keras_serializable(package="keras_classreg")
class ClassRegModel(keras.Model):
    """A functional `keras.Model` whose Class Regularization blocks are
    re-attached to the model's own classifier when it is loaded.

    Build it like `keras.Model(inputs, outputs)`. Every builder in
    `keras_classreg.models` returns one.

    Example:

    >>> import keras
    >>> from keras_classreg import ClassRegularization, ClassRegModel
    >>> classifier = keras.layers.Dense(4, name="classifier")
    >>> classifier.build((None, 8))
    >>> inputs = keras.Input((2, 8, 8, 3))
    >>> x = keras.layers.Conv3D(8, 3, padding="same")(inputs)
    >>> x = ClassRegularization(0.2, classifier)(x)
    >>> x = keras.layers.GlobalAveragePooling3D()(x)
    >>> model = ClassRegModel(inputs, classifier(x))
    >>> model.output_shape
    (None, 4)
    """

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = super().from_config(config, custom_objects=custom_objects)
        return wire_classifiers(model)
