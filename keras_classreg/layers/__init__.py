"""Keras layers of keras_classreg."""

from keras_classreg.layers.class_regularization import ClassRegularization

__all__ = ["ClassRegularization"]
