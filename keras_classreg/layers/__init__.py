"""Keras layers of keras_classreg."""

from keras_classreg.layers.class_regularization import ClassRegularization
from keras_classreg.layers.class_regularization_base import ClassRegularizationBase
from keras_classreg.layers.clip_augmentation import ClipAugmentation
from keras_classreg.layers.folded_class_regularization import FoldedClassRegularization
from keras_classreg.layers.space_to_depth_conv import SpaceToDepthConv3D
from keras_classreg.layers.zero_padding_shortcut import ZeroPaddingShortcut

__all__ = [
    "ClassRegularization",
    "ClassRegularizationBase",
    "ClipAugmentation",
    "FoldedClassRegularization",
    "SpaceToDepthConv3D",
    "ZeroPaddingShortcut",
]
