"""What the loaders share: the result record and the weight bookkeeping."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Pretrained:
    """A published model loaded into the zoo.

    Attributes:
        model: the Keras model (no Class Regularization blocks, the
            published classifier), computing the original's function.
        builder: the zoo name that rebuilds this architecture
            (`keras_classreg.models.get(builder, num_classes=...,
            input_shape=..., **builder_options)`).
        builder_options: the builder's architecture arguments (JSON-able).
        clip_format: the input convention of the published weights: dict
            with `clip_length`, `stride` (frames between sampled frames),
            `crop_size`, `short_side` (frames are resized so that their
            short side has this many pixels, then centre-cropped),
            `num_clips`, `num_crops`, `mean`, `std` (of [0, 1] pixels:
            the model reads `(pixels / 255 - mean) / std`) and
            `class_names` (a list, or `None` when the source publishes none
            for this class count).
        source: provenance: the file, its format, the detected release and
            layout, how every stored entry was used, and notes.
    """

    model: object
    builder: str
    builder_options: dict
    clip_format: dict
    source: dict


class WeightSource:
    """Named arrays of a checkpoint; every entry must be used exactly once."""

    def __init__(self, values, origin):
        self.values = dict(values)
        self.origin = origin
        self.used = set()
        self.ignored = {}

    def take(self, name, shape=None, what=None):
        if name not in self.values:
            raise ValueError(
                f"{self.origin}: the entry '{name}' is missing"
                + (f" (needed for {what})" if what else "")
                + ". Is this checkpoint of the architecture it was taken for?"
            )
        if name in self.used:
            raise ValueError(f"{self.origin}: the entry '{name}' would be used twice.")
        value = np.asarray(self.values[name])
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"{self.origin}: the entry '{name}' has shape {tuple(value.shape)}, "
                f"expected {tuple(shape)}" + (f" for {what}" if what else "") + "."
            )
        self.used.add(name)
        return value

    def ignore(self, name, reason):
        self.used.add(name)
        self.ignored[name] = reason

    def check_all_used(self):
        left = sorted(set(self.values) - self.used)
        if left:
            shown = ", ".join(left[:12]) + (f", ... ({len(left)} in all)" if len(left) > 12 else "")
            raise ValueError(
                f"{self.origin}: {len(left)} entries have no place in the Keras "
                f"model: {shown}. The checkpoint's architecture differs from the "
                "one built for it."
            )

    def report(self):
        return {
            "entries": len(self.values),
            "loaded": len(self.used) - len(self.ignored),
            "ignored": dict(sorted(self.ignored.items())),
        }


def set_layer_weights(layer, values, origin):
    """`layer.set_weights(values)` with a message naming the layer."""
    expected = [tuple(w.shape) for w in layer.weights]
    received = [tuple(np.shape(v)) for v in values]
    if expected != received:
        raise ValueError(
            f"{origin}: layer '{layer.name}' has weights of shapes {expected}, "
            f"the checkpoint gives {received}."
        )
    layer.set_weights([np.asarray(v, dtype=w.dtype) for v, w in zip(values, layer.weights)])
