"""Keras layers of keras_classreg."""

from keras_classreg.layers.class_regularization import ClassRegularization
from keras_classreg.layers.clip_augmentation import ClipAugmentation

__all__ = ["ClassRegularization", "ClipAugmentation"]
