"""The inference form of the Class Regularization block: class weights folded."""

import keras
from keras import ops

from keras_classreg.layers.class_regularization_base import ClassRegularizationBase


@keras.saving.register_keras_serializable(package="keras_classreg")
class FoldedClassRegularization(ClassRegularizationBase):
    """A `ClassRegularization` block whose class weights are a constant.

    Once training is over, a block's projected class weights
    `W_l = W^T P (+ b)` (`[K, C_l]`) no longer change, so an inference copy
    can hold them instead of the projection `P` and the classifier kernel:
    same outputs (up to float32 re-association), and at batch 1 a fifth of
    the memory traffic for ResNet-50-3D with K = 400. Made by
    `keras_classreg.fold_class_regularization(model)`; the weights are the
    non-trainable `folded_class_weights`.

    The block still knows its classifier (by name, re-wired on load) for the
    number of classes and the class names of explanations, but reads none of
    its weights.

    Args:
        num_classes: `K`, the number of classes (rows of `W_l`).
        affection_rate: float in `[0, 1]`, as for `ClassRegularization`.
        classifier: the model's `Dense` classifier, its layer name, or `None`.
        normalization_range: `"symmetric"` (default) or `"amplify"`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: activations `[N, T, H, W, C]` or `[N, H, W, C]`, any float
            dtype; the output has the same shape and dtype.

    Example:

    >>> import numpy as np
    >>> block = FoldedClassRegularization(num_classes=4, affection_rate=0.3)
    >>> x = np.random.rand(2, 3, 5, 5, 8).astype("float32")
    >>> block(x).shape
    (2, 3, 5, 5, 8)
    >>> block.folded_class_weights.shape
    (4, 8)
    """

    def __init__(
        self,
        num_classes,
        affection_rate=0.2,
        classifier=None,
        normalization_range="symmetric",
        **kwargs,
    ):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(
                "Invalid value for argument `num_classes`. Expected a positive "
                f"int. Received: num_classes={num_classes!r}"
            )
        self.num_classes = num_classes
        super().__init__(affection_rate, classifier, normalization_range, **kwargs)

    def _check_compatible(self, classifier):
        # A folded block reads no classifier kernel, only its classes.
        if classifier.units != self.num_classes:
            raise ValueError(
                f"FoldedClassRegularization layer '{self.name}' holds class "
                f"weights for {self.num_classes} classes, but classifier "
                f"'{classifier.name}' has {classifier.units} units."
            )

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        self.folded_class_weights = self.add_weight(
            name="folded_class_weights",
            shape=(self.num_classes, channels),
            initializer="zeros",
            dtype="float32",
            trainable=False,
        )

    def class_weights(self):
        """`W_l`, the stored class weights `[K, C_l]`."""
        return ops.convert_to_tensor(self.folded_class_weights)

    def _num_classes(self):
        return self.num_classes

    def _logits(self, pooled):
        return ops.matmul(pooled, ops.transpose(self.folded_class_weights))

    def _selected_class_weights(self, class_index):
        return ops.take(self.folded_class_weights, class_index, axis=0)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config
