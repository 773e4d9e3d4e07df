"""The Class Regularization block (Stergiou, Poppe & Veltkamp, 2020)."""

import keras
from keras import ops

NORMALIZATION_RANGES = ("symmetric", "amplify")


@keras.saving.register_keras_serializable(package="keras_classreg")
class ClassRegularization(keras.layers.Layer):
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
    which keeps the block under 0.1 % of a 3D ResNet's FLOPs.

    Args:
        affection_rate: float in `[0, 1]`, how strongly channels are
            amplified or damped. `0` makes the block the identity.
        classifier: the model's final `keras.layers.Dense` classifier; or
            its layer name (a string), which the owning model resolves with
            `keras_classreg.wire_classifiers(model)` (done for you by
            `keras_classreg.ClassRegModel`, which every model builder here
            returns, when a saved model is loaded); or `None` to `attach` one
            later. A Dense layer must be built before this layer is.
        classifier_features: number of input features of the classifier
            (`C_f`). Only needed when `classifier` is a name (it is stored in
            the config so that the block can be rebuilt before re-wiring).
        use_bias: whether the projection of the class weights has a bias.
        stop_classifier_gradient: if `True` (default), the block reads the
            classifier kernel without gradient (the paper's weight sharing).
        normalization_range: `"symmetric"` (`[1 - a, 1 + a]`, default) or
            `"amplify"` (`[1, 1 + a]`).
        projection_initializer: initializer of `projection_kernel`.
        folded_classes: `None` (default) for a trainable block. An int `K`
            makes an inference-only *folded* block: it holds `W_l`
            (`[K, C_l]`) as the non-trainable weight `folded_class_weights`
            instead of a projection, and reads neither `P` nor the
            classifier kernel in `call`. Made by
            `keras_classreg.fold_class_regularization(model)`; same outputs,
            less memory traffic at small batches.
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
        folded_classes=None,
        **kwargs,
    ):
        # Dtypes are handled by hand: the maths runs in float32 and the
        # classifier kernel must not be autocast to float16 under mixed
        # precision (that would round the class weights).
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        if (
            isinstance(affection_rate, bool)
            or not isinstance(affection_rate, (int, float))
            or not 0.0 <= float(affection_rate) <= 1.0
        ):
            raise ValueError(
                "Invalid value for argument `affection_rate`. Expected a "
                f"float between 0 and 1. Received: affection_rate={affection_rate!r}"
            )
        if normalization_range not in NORMALIZATION_RANGES:
            raise ValueError(
                "Invalid value for argument `normalization_range`. Expected "
                f"one of {NORMALIZATION_RANGES}. "
                f"Received: normalization_range={normalization_range!r}"
            )
        self.affection_rate = float(affection_rate)
        self.use_bias = bool(use_bias)
        self.stop_classifier_gradient = bool(stop_classifier_gradient)
        self.normalization_range = normalization_range
        self.projection_initializer = keras.initializers.get(
            projection_initializer
        )
        if classifier_features is not None and (
            not isinstance(classifier_features, int) or classifier_features < 1
        ):
            raise ValueError(
                "Invalid value for argument `classifier_features`. Expected a "
                f"positive int. Received: classifier_features={classifier_features!r}"
            )
        self.classifier_features = classifier_features
        if folded_classes is not None and (
            isinstance(folded_classes, bool)
            or not isinstance(folded_classes, int)
            or folded_classes < 1
        ):
            raise ValueError(
                "Invalid value for argument `folded_classes`. Expected None or "
                f"a positive int. Received: folded_classes={folded_classes!r}"
            )
        self.folded_classes = folded_classes
        self._classifier_ref = _Reference(None)
        self.classifier_name = None
        if isinstance(classifier, str):
            self.classifier_name = classifier
        elif classifier is not None:
            self.attach(classifier)

    # ------------------------------------------------------------------
    # The classifier reference
    # ------------------------------------------------------------------
    def __dir__(self):
        # Keras's weight saving walks `dir(layer)`; hiding the reference keeps
        # the classifier's weights saved once, under the model's classifier.
        return [name for name in super().__dir__() if name != "classifier"]

    @property
    def classifier(self):
        """The attached `Dense` classifier (not tracked as a sub-layer)."""
        return self._classifier_ref.value

    def attach(self, classifier):
        """Sets or replaces the `Dense` classifier whose kernel is read.

        The layer is held by reference, not tracked: its kernel stays the
        classifier's own weight (saved once, updated by the optimizer
        through the classifier).
        """
        if not isinstance(classifier, keras.layers.Dense):
            raise TypeError(
                "Invalid value for argument `classifier`. Expected a "
                "`keras.layers.Dense` layer (the model's final classifier). "
                f"Received: classifier={classifier!r}"
            )
        self._check_compatible(classifier)
        self._classifier_ref = _Reference(classifier)
        self.classifier_name = classifier.name
        if classifier.built:
            self.classifier_features = int(classifier.kernel.shape[0])
        return self

    def _require_classifier(self):
        classifier = self.classifier
        if classifier is None and self.classifier_name is not None:
            raise ValueError(
                f"ClassRegularization layer '{self.name}' refers to the "
                f"classifier '{self.classifier_name}' by name but is not wired "
                "to it yet. Call `keras_classreg.wire_classifiers(model)` on "
                "the model that owns both (or build the model as a "
                "`keras_classreg.ClassRegModel`, which does it on load)."
            )
        if classifier is None:
            raise ValueError(
                f"ClassRegularization layer '{self.name}' has no classifier: "
                "pass `classifier=` (the model's final Dense layer) or call "
                "`attach(classifier)` before using it."
            )
        if not classifier.built:
            raise ValueError(
                f"ClassRegularization layer '{self.name}': the classifier "
                f"'{classifier.name}' is not built yet, so its number of input "
                "features is unknown. Build it first, e.g. "
                "`classifier.build((None, num_features))`."
            )
        return classifier

    def _check_compatible(self, classifier):
        if self.folded_classes is not None:
            # A folded block reads no classifier kernel, only its classes.
            if classifier.units != self.folded_classes:
                raise ValueError(
                    f"ClassRegularization layer '{self.name}' holds folded class "
                    f"weights for {self.folded_classes} classes, but classifier "
                    f"'{classifier.name}' has {classifier.units} units."
                )
            return
        if not classifier.built:
            return
        if self.built:
            expected = self.projection_kernel.shape[0]
        else:
            expected = self.classifier_features
        received = classifier.kernel.shape[0]
        if expected is not None and received != expected:
            raise ValueError(
                f"ClassRegularization layer '{self.name}' projects {expected} "
                f"classifier features, but classifier '{classifier.name}' takes "
                f"{received} features."
            )

    # ------------------------------------------------------------------
    # Keras API
    # ------------------------------------------------------------------
    def build(self, input_shape):
        if len(input_shape) not in (4, 5):
            raise ValueError(
                f"ClassRegularization layer '{self.name}' expects inputs of "
                "rank 5 `[N, T, H, W, C]` or rank 4 `[N, H, W, C]`. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"ClassRegularization layer '{self.name}' needs a known channel "
                f"dimension. Received: input_shape={tuple(input_shape)}"
            )
        self.projection_bias = None
        if self.folded_classes is not None:
            self.projection_kernel = None
            self.folded_class_weights = self.add_weight(
                name="folded_class_weights",
                shape=(self.folded_classes, channels),
                initializer="zeros",
                dtype="float32",
                trainable=False,
            )
            return
        features = self.classifier_features
        if features is None:
            features = self._require_classifier().kernel.shape[0]
        self.projection_kernel = self.add_weight(
            name="projection_kernel",
            shape=(features, channels),
            initializer=self.projection_initializer,
            dtype="float32",
        )
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
        """`W_l = W^T P (+ b)`: class weights in this stage's space, `[K, C_l]`.

        A folded block (`folded_classes` set) returns its stored copy.
        """
        if self.folded_classes is not None:
            return ops.convert_to_tensor(self.folded_class_weights)
        weights = ops.matmul(
            ops.transpose(self._classifier_kernel()), self.projection_kernel
        )
        if self.projection_bias is not None:
            weights = weights + self.projection_bias
        return weights

    def _num_classes(self):
        if self.folded_classes is not None:
            return self.folded_classes
        return self._require_classifier().units

    def _pooled(self, inputs):
        x = ops.cast(inputs, "float32")
        return ops.mean(x, axis=tuple(range(1, len(inputs.shape) - 1)))

    def _logits(self, pooled):
        if self.folded_classes is not None:
            return ops.matmul(pooled, ops.transpose(self.folded_class_weights))
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
            logits = logits + ops.sum(
                pooled * self.projection_bias, axis=-1, keepdims=True
            )
        return logits

    def _selected_class_weights(self, class_index):
        # W_l[k] = W[:, k]^T P (+ b), for the one class of each sample.
        if self.folded_classes is not None:
            return ops.take(self.folded_class_weights, class_index, axis=0)
        # gather the columns (not rows of a transposed copy of the kernel)
        columns = ops.take(self._classifier_kernel(), class_index, axis=1)
        selected = ops.matmul(ops.transpose(columns), self.projection_kernel)
        if self.projection_bias is not None:
            selected = selected + self.projection_bias
        return selected

    def class_logits(self, inputs):
        """The block's own class scores `z`, `[N, K]` (float32)."""
        return self._logits(self._pooled(inputs))

    def channel_scales(self, inputs):
        """Per-sample channel scales `[N, C_l]` (float32) the block applies."""
        logits = self._logits(self._pooled(inputs))
        selected = self._selected_class_weights(ops.argmax(logits, axis=-1))
        return self._normalize(selected)

    def _normalize(self, w):
        low, high = 1.0 - self.affection_rate, 1.0 + self.affection_rate
        if self.normalization_range == "amplify":
            low = 1.0
        w_min = ops.min(w, axis=-1, keepdims=True)
        w_max = ops.max(w, axis=-1, keepdims=True)
        span = w_max - w_min
        flat = span <= 0.0
        unit = (w - w_min) / ops.where(flat, ops.ones_like(span), span)
        return ops.where(flat, ops.ones_like(w), low + (high - low) * unit)

    def call(self, inputs):
        if not self.built:  # called as a function before being built
            self.build(inputs.shape)
        scales = self.channel_scales(inputs)
        for _ in range(len(inputs.shape) - 2):
            scales = ops.expand_dims(scales, axis=1)
        out = ops.cast(inputs, "float32") * scales
        return ops.cast(out, inputs.dtype)

    def class_evidence(self, inputs, class_index=None):
        """Channel-weighted class-evidence maps `sum_c A[..., c] W_l[k, c]`.

        Args:
            inputs: the activations this block receives, `[N, T, H, W, C_l]`
                (or `[N, H, W, C_l]`).
            class_index: `None` for the block's own predicted class per
                sample, an int for one class for all samples, or an int
                tensor `[N]`.

        Returns:
            float32 maps `[N, T, H, W]` (or `[N, H, W]`), not normalised.
        """
        x = ops.cast(inputs, "float32")
        if class_index is None:
            logits = self._logits(self._pooled(inputs))
            class_index = ops.argmax(logits, axis=-1)
        elif isinstance(class_index, int):
            num_classes = self._num_classes()
            if not 0 <= class_index < num_classes:
                raise ValueError(
                    f"Invalid value for argument `class_index`. Expected an "
                    f"int in [0, {num_classes}). Received: class_index={class_index}"
                )
            class_index = ops.full((ops.shape(x)[0],), class_index, "int32")
        selected = self._selected_class_weights(class_index)  # [N, C_l]
        for _ in range(len(inputs.shape) - 2):
            selected = ops.expand_dims(selected, axis=1)
        return ops.sum(x * selected, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "affection_rate": self.affection_rate,
                "use_bias": self.use_bias,
                "stop_classifier_gradient": self.stop_classifier_gradient,
                "normalization_range": self.normalization_range,
                "projection_initializer": keras.initializers.serialize(
                    self.projection_initializer
                ),
                # A config cannot hold a live variable: the classifier is
                # stored by name and the owning model re-wires it on load.
                "classifier": self.classifier_name,
                "classifier_features": self.classifier_features,
                "folded_classes": self.folded_classes,
            }
        )
        config.pop("autocast", None)
        return config


class _Reference:
    """An untracked holder, so the classifier is not a sub-layer of the block."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value
