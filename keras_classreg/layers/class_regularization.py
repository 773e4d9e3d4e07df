"""The Class Regularization block (Stergiou, Poppe & Veltkamp, 2020)."""

import keras
from keras import ops

from keras_classreg.layers.class_regularization_base import (
    NORMALIZATION_RANGES,
    ClassRegularizationBase,
)

__all__ = ["ClassRegularization", "NORMALIZATION_RANGES"]


@keras.saving.register_keras_serializable(package="keras_classreg")
class ClassRegularization(ClassRegularizationBase):
    """Re-weights a stage's channels by the weights of the class it predicts.

    The block pools the stage's activations over space (and time), projects
    the final classifier's class weights into the stage's channel space with
    its own point-wise projection, guesses the class of every sample from the
    pooled features, and scales each channel by the guessed class's
    (min-max normalised) weight: informative channels are amplified, the
    others damped. It holds a *reference* to the classifier's kernel; by
    default no gradient flows from the block into that kernel.

    For one sample with activations `A` (`[T, H, W, C_l]` or `[H, W, C_l]`),
    classifier kernel `W` (`[C_f, K]`) and projection `P` (`[C_f, C_l]`):

    1. `a = mean(A)` over all axes but the channels, `[C_l]`;
    2. `W_l = stop_gradient(W)^T P (+ b)`, `[K, C_l]`: the class weights
       in the stage's channel space;
    3. `z = W_l a`, `k* = argmax z`;
    4. `w = W_l[k*]`, min-max normalised into `[1 - a, 1 + a]` (`a` is the
       affection rate; `[1, 1 + a]` with `normalization_range="amplify"`),
       all ones when every channel weight is equal;
    5. `out = A * w` (broadcast over space and time).

    `W_l` is never materialised in `call`: `z = (a P^T) W` and
    `w = W[:, k*]^T P` give the same numbers (associativity) for
    `O(C_f (C_l + K))` FLOPs per sample instead of `O(K C_f C_l)` per call,
    which keeps the block under 0.1 % of a 3D ResNet's FLOPs. For inference,
    `keras_classreg.fold_class_regularization(model)` replaces every block by
    a `FoldedClassRegularization` holding `W_l` (same outputs).

    Args:
        affection_rate: float in `[0, 1]`, how strongly channels are
            amplified or damped. `0` makes the block the identity.
        classifier: the model's final `keras.layers.Dense` classifier; or
            its layer name (a string), which the owning model resolves with
            `keras_classreg.wire_classifiers(model)` (done for you by
            `keras_classreg.ClassRegModel`, which every model builder here
            returns, when a saved model is loaded); or `None` to `attach` one
            later. A Dense layer must be built before this layer is.
            `get_classifier()` returns the attached layer.
        classifier_features: number of input features of the classifier
            (`C_f`). Only needed when `classifier` is a name (it is stored in
            the config so that the block can be rebuilt before re-wiring).
        use_bias: whether the projection of the class weights has a bias.
        stop_classifier_gradient: if `True` (default), the block reads the
            classifier kernel without gradient (the paper's weight sharing).
        normalization_range: `"symmetric"` (`[1 - a, 1 + a]`, default) or
            `"amplify"` (`[1, 1 + a]`).
        projection_initializer: initializer of `projection_kernel`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: activations `[N, T, H, W, C]` (3D CNNs) or `[N, H, W, C]`
            (2D CNNs), any float dtype; the output has the same shape and
            dtype. Internals run in float32, also under `mixed_float16`.

    Example:

    >>> import numpy as np, keras
    >>> classifier = keras.layers.Dense(10)
    >>> classifier.build((None, 32))
    >>> block = ClassRegularization(affection_rate=0.3, classifier=classifier)
    >>> x = np.random.rand(2, 4, 7, 7, 16).astype("float32")
    >>> block(x).shape
    (2, 4, 7, 7, 16)
    >>> block.class_logits(x).shape
    (2, 10)
    """

    def __init__(
        self,
        affection_rate=0.2,
        classifier=None,
        use_bias=False,
        stop_classifier_gradient=True,
        normalization_range="symmetric",
        projection_initializer="glorot_uniform",
        classifier_features=None,
        **kwargs,
    ):
        if classifier_features is not None and (
            isinstance(classifier_features, bool)
            or not isinstance(classifier_features, int)
            or classifier_features < 1
        ):
            raise ValueError(
                "Invalid value for argument `classifier_features`. Expected a "
                f"positive int. Received: classifier_features={classifier_features!r}"
            )
        self.classifier_features = classifier_features
        self.use_bias = bool(use_bias)
        self.stop_classifier_gradient = bool(stop_classifier_gradient)
        self.projection_initializer = keras.initializers.get(projection_initializer)
        super().__init__(affection_rate, classifier, normalization_range, **kwargs)

    # ------------------------------------------------------------------
    def attach(self, classifier):
        super().attach(classifier)
        if classifier.built:
            self.classifier_features = int(classifier.kernel.shape[0])
        return self

    def _check_compatible(self, classifier):
        if not classifier.built:
            return
        expected = self.projection_kernel.shape[0] if self.built else self.classifier_features
        received = classifier.kernel.shape[0]
        if expected is not None and received != expected:
            raise ValueError(
                f"ClassRegularization layer '{self.name}' projects {expected} "
                f"classifier features, but classifier '{classifier.name}' takes "
                f"{received} features."
            )

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        features = self.classifier_features
        if features is None:
            features = self._require_classifier().kernel.shape[0]
        self.projection_kernel = self.add_weight(
            name="projection_kernel",
            shape=(features, channels),
            initializer=self.projection_initializer,
            dtype="float32",
        )
        self.projection_bias = None
        if self.use_bias:
            self.projection_bias = self.add_weight(
                name="projection_bias",
                shape=(channels,),
                initializer="zeros",
                dtype="float32",
            )

    def _classifier_kernel(self):
        kernel = ops.cast(self._require_classifier().kernel, "float32")
        if self.stop_classifier_gradient:
            kernel = ops.stop_gradient(kernel)
        return kernel

    def class_weights(self):
        """`W_l = W^T P (+ b)`: class weights in this stage's space, `[K, C_l]`."""
        weights = ops.matmul(ops.transpose(self._classifier_kernel()), self.projection_kernel)
        if self.projection_bias is not None:
            weights = weights + self.projection_bias
        return weights

    def _num_classes(self):
        return self._require_classifier().units

    def _logits(self, pooled):
        # z = a W_l^T = (a P^T) W (+ a.b): associativity gives the same
        # numbers as projecting all K classes first, at O(C_f (C_l + K)) per
        # sample instead of O(K C_f C_l) per call (6.3 GFLOPs for
        # ResNet-50-3D with K = 400, more than the network's own stages at
        # 16x112x112). A transposed matmul operand is folded into the
        # MatMul by TensorFlow's graph optimiser (no copy per call); the
        # FLOPs profiler counts MatMul, not Einsum, hence no `einsum` here.
        logits = ops.matmul(
            ops.matmul(pooled, ops.transpose(self.projection_kernel)),
            self._classifier_kernel(),
        )
        if self.projection_bias is not None:
            logits = logits + ops.sum(pooled * self.projection_bias, axis=-1, keepdims=True)
        return logits

    def _selected_class_weights(self, class_index):
        # W_l[k] = W[:, k]^T P (+ b), for the one class of each sample;
        # gather the columns (not rows of a transposed copy of the kernel)
        columns = ops.take(self._classifier_kernel(), class_index, axis=1)
        selected = ops.matmul(ops.transpose(columns), self.projection_kernel)
        if self.projection_bias is not None:
            selected = selected + self.projection_bias
        return selected

    def get_config(self):
        config = super().get_config()
        config.update(
            use_bias=self.use_bias,
            stop_classifier_gradient=self.stop_classifier_gradient,
            projection_initializer=keras.initializers.serialize(self.projection_initializer),
            classifier_features=self.classifier_features,
        )
        return config
