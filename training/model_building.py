"""Building a run's model: zoo names or user builders, and weight transfer.

>>> model = build_model("resnet18_3d", num_classes=3, input_shape=(4, 32, 32, 3))
>>> model.output_shape
(None, 3)
"""

import importlib
import importlib.util
import os

from keras_classreg import models as zoo


def resolve_model_builder(spec):
    """A model builder from a zoo name, `'package.module:fn'` or `'file.py:fn'`.

    The builder takes the zoo's keyword arguments (`num_classes`,
    `input_shape`, `class_regularization`, `affection_rates`, `dropout`,
    `class_regularization_options`) and returns a Keras model whose last
    layer is the softmax `Dense` classifier.
    """
    if spec in zoo.names():
        return zoo.builder(spec)
    if ":" not in spec:
        raise ValueError(
            f"Unknown model {spec!r}. Expected one of: {', '.join(zoo.names())}; "
            "or 'package.module:builder' / 'path/file.py:builder'."
        )
    module_name, _, attribute = spec.rpartition(":")
    if module_name.endswith(".py"):
        if not os.path.isfile(module_name):
            raise FileNotFoundError(f"Model builder file not found: {module_name} (model={spec!r})")
        module_spec = importlib.util.spec_from_file_location(
            os.path.splitext(os.path.basename(module_name))[0], module_name
        )
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    builder = getattr(module, attribute, None)
    if not callable(builder):
        raise ValueError(
            f"Model builder {attribute!r} not found in {module_name} (model={spec!r})."
        )
    return builder


def build_model(model, num_classes, input_shape, model_builder=None, **options):
    """The model a run config describes (call inside the strategy's scope).

    Args:
        model: a zoo name or a builder spec (see `resolve_model_builder`).
        num_classes, input_shape: the builder's first arguments.
        model_builder: a callable replacing the builder `model` names.
        **options: further builder arguments (`class_regularization`,
            `affection_rates`, `dropout`, `class_regularization_options`,
            and a run's `model_options`: `padding`, `shortcut`, ...); `None`
            values are left out, so builders keep their defaults.
    """
    builder = model_builder or resolve_model_builder(model)
    kwargs = {key: value for key, value in options.items() if value is not None}
    return builder(num_classes=num_classes, input_shape=tuple(input_shape), **kwargs)


def transfer_weights(source, target, skip=()):
    """Copies weights from `source` into `target` layer by layer, by name.

    Layers of `target` without a same-named layer in `source` (e.g. the Class
    Regularization blocks' projections when `source` is the base model) keep
    their fresh initial weights; same-named layers whose weight shapes differ
    (e.g. a classifier for another number of classes) are left fresh too and
    reported. Layers named in `skip` stay fresh (reported as new).

    Returns:
        dict with lists of layer names: `transferred`, `new` (no source layer
        of that name, and holding weights), `mismatched` (shape differs) and
        `unused` (source layers with weights that `target` lacks).
    """
    source_layers = {layer.name: layer for layer in source._flatten_layers(include_self=False)}
    report = {"transferred": [], "new": [], "mismatched": [], "unused": []}
    seen = set()
    for layer in target._flatten_layers(include_self=False):
        if not layer.weights:
            continue
        origin = None if layer.name in skip else source_layers.get(layer.name)
        if origin is None or not origin.weights:
            report["new"].append(layer.name)
            continue
        seen.add(layer.name)
        values = origin.get_weights()
        shapes = [tuple(v.shape) for v in values]
        if shapes != [tuple(w.shape) for w in layer.weights]:
            report["mismatched"].append(layer.name)
            continue
        layer.set_weights(values)
        report["transferred"].append(layer.name)
    report["unused"] = [
        name for name, layer in source_layers.items() if layer.weights and name not in seen
    ]
    if not report["transferred"]:
        raise ValueError(
            f"Weight transfer from model '{source.name}' into '{target.name}': "
            "no layer name in common with matching shapes (is this the right "
            "architecture?)."
        )
    return report
