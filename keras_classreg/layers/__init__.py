"""Keras layers of keras_classreg."""

from keras_classreg.layers.class_regularization import ClassRegularization
from keras_classreg.layers.clip_augmentation import ClipAugmentation
from keras_classreg.layers.zero_padding_shortcut import ZeroPaddingShortcut

__all__ = ["ClassRegularization", "ClipAugmentation", "ZeroPaddingShortcut"]
