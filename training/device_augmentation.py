"""Training with the clip augmentation on the accelerator.

With `augment_on="device"` the input pipeline yields uint8 frames plus the
window and flip it drew (`training.data.clip_dataset`), and
`DeviceAugmentedModel` runs `keras_classreg.layers.ClipAugmentation` on
them before the model, inside the compiled training step. Float clip batches
(validation, evaluation) go straight to the model. What is saved is the
model itself (`inference_model`), with the usual float clip input: export,
evaluate and serving do not know the difference.

Example:

>>> import keras_classreg
>>> from keras_classreg import ClipAugmentation
>>> from training.data import clip_dataset, DEFAULT_MEAN, DEFAULT_STD
>>> model = keras_classreg.models.resnet18_3d(input_shape=(8, 56, 56, 3),
...                                         num_classes=6)
>>> augmentation = ClipAugmentation(56, DEFAULT_MEAN, DEFAULT_STD)
>>> trainer = DeviceAugmentedModel(model, augmentation)
>>> trainer.compile("sgd", "sparse_categorical_crossentropy")
>>> trainer.fit(clip_dataset("prepared/", clip_length=8, crop_size=56,
...                          augment_on="device", repeat=True), steps_per_epoch=10)
>>> trainer.inference_model.save("model.keras")
"""

import keras


class DeviceAugmentedModel(keras.Model):
    """`model(augmentation(batch))` for device-augmentation batches (dicts of
    `frames`, `window`, `mirror`), `model(batch)` for float clips.

    Args:
        model: the Keras model that classifies float clips.
        augmentation: a `ClipAugmentation` layer.
    """

    def __init__(self, model, augmentation, **kwargs):
        super().__init__(**kwargs)
        self.inner = model
        self.augmentation = augmentation

    @property
    def inference_model(self):
        """The wrapped model (what checkpoints and exports hold)."""
        return self.inner

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            inputs = self.augmentation(inputs)
        return self.inner(inputs, training=training)
