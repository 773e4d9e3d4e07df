"""What both forms of the Class Regularization block share.

`ClassRegularization` (trainable: a projection `P` of the classifier's
kernel) and `FoldedClassRegularization` (inference: the projected class
weights `W_l` held as a constant) differ only in where `W_l` comes from.
This base holds the rest: the affection rate and its range, the reference
to the model's classifier, pooling, the per-sample choice of class, the
min-max normalisation and the channel scaling.
"""

import keras
from keras import ops

NORMALIZATION_RANGES = ("symmetric", "amplify")


class ClassRegularizationBase(keras.layers.Layer):
    """Base of the Class Regularization layers (not used on its own).

    Subclasses implement `build`, `class_weights()`, `_logits(pooled)`,
    `_selected_class_weights(class_index)` and `_num_classes()`.
    """

    def __init__(
        self, affection_rate=0.2, classifier=None, normalization_range="symmetric", **kwargs
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
        self.normalization_range = normalization_range
        # The classifier is held in an untracked holder, and there is no
        # attribute that returns it: Keras's saver walks a layer's attributes,
        # and the classifier's weights belong to the model's classifier only.
        self._classifier_ref = _Reference(None)
        self.classifier_name = None
        if isinstance(classifier, str):
            self.classifier_name = classifier
        elif classifier is not None:
            self.attach(classifier)

    # ------------------------------------------------------------------
    # The classifier reference
    # ------------------------------------------------------------------
    def get_classifier(self):
        """The attached `Dense` classifier, or `None` before wiring."""
        return self._classifier_ref.value

    def attach(self, classifier):
        """Sets or replaces the `Dense` classifier whose class weights are read.

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
        return self

    def _check_compatible(self, classifier):
        """Raises `ValueError` if `classifier` cannot serve this block."""

    def _require_classifier(self):
        classifier = self.get_classifier()
        if classifier is None and self.classifier_name is not None:
            raise ValueError(
                f"{type(self).__name__} layer '{self.name}' refers to the "
                f"classifier '{self.classifier_name}' by name but is not wired "
                "to it yet. Call `keras_classreg.wire_classifiers(model)` on "
                "the model that owns both (or build the model as a "
                "`keras_classreg.ClassRegModel`, which does it on load)."
            )
        if classifier is None:
            raise ValueError(
                f"{type(self).__name__} layer '{self.name}' has no classifier: "
                "pass `classifier=` (the model's final Dense layer) or call "
                "`attach(classifier)` before using it."
            )
        if not classifier.built:
            raise ValueError(
                f"{type(self).__name__} layer '{self.name}': the classifier "
                f"'{classifier.name}' is not built yet, so its number of input "
                "features is unknown. Build it first, e.g. "
                "`classifier.build((None, num_features))`."
            )
        return classifier

    def _check_input_shape(self, input_shape):
        if len(input_shape) not in (4, 5):
            raise ValueError(
                f"{type(self).__name__} layer '{self.name}' expects inputs of "
                "rank 5 `[N, T, H, W, C]` or rank 4 `[N, H, W, C]`. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        if input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} layer '{self.name}' needs a known "
                f"channel dimension. Received: input_shape={tuple(input_shape)}"
            )
        return int(input_shape[-1])

    # ------------------------------------------------------------------
    # The block
    # ------------------------------------------------------------------
    def _pooled(self, inputs):
        x = ops.cast(inputs, "float32")
        return ops.mean(x, axis=tuple(range(1, len(inputs.shape) - 1)))

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
            class_index = ops.argmax(self._logits(self._pooled(inputs)), axis=-1)
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
            affection_rate=self.affection_rate,
            normalization_range=self.normalization_range,
            # A config cannot hold a live variable: the classifier is stored
            # by name and the owning model re-wires it on load.
            classifier=self.classifier_name,
        )
        config.pop("autocast", None)
        return config


class _Reference:
    """An untracked holder, so the classifier is not a sub-layer of the block."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value
