"""Model surgery: add Class Regularization blocks to an existing Keras model.

The paper's block "can be added to any layer or block of convolutions in
pre-trained models". `add_class_regularization` does that for a functional or
sequential Keras model (a 3D CNN of your own, a `keras.applications` 2D
classifier, a zoo model built without blocks): it rebuilds the model's graph,
inserting a `ClassRegularization` block right after each chosen layer, wired
to the model's final `Dense` classifier, and carries every original weight
over. With affection rate 0 the new model computes exactly what the old one
did.
"""

import difflib
import numbers

import keras
from keras.src.models.functional import Functional

from keras_classreg.classreg_model import ClassRegModel, wire_classifiers
from keras_classreg.layers.class_regularization import ClassRegularization

# Layers that may sit between the classifier and a model output: they do not
# change which layer holds the class weights.
_HEAD_PASSTHROUGH = (
    keras.layers.Activation,
    keras.layers.Softmax,
    keras.layers.Dropout,
    keras.layers.Identity,
)

_SUPPORTED = (
    "a functional model (`keras.Model(inputs, outputs)`, `keras.applications`, "
    "the `keras_classreg.models` zoo) or a built `keras.Sequential`"
)


def add_class_regularization(
    model,
    after,
    affection_rates=None,
    classifier=None,
    *,
    block_options=None,
    share_layers=False,
    name=None,
):
    """Returns a copy of `model` with a Class Regularization block after
    each chosen layer.

    Every block is inserted right after its layer, so every consumer of that
    layer's output (and the model output, if it is one) sees the regularized
    activations. The blocks read the class weights of the model's final
    `Dense` classifier. All original weights are copied into the new model
    (the original model is left untouched), so with `affection_rates=0` the
    new model's outputs equal the old model's exactly. The new blocks'
    projections are freshly initialised; fine-tune the result (the paper's
    protocol: train the base, add the blocks, fine-tune).

    Layers of nested functional or sequential sub-models (for example a
    `keras.applications` backbone called inside your model) can be chosen
    too. A layer called several times (a shared layer) gets one block,
    applied after each of its calls.

    Args:
        model: a functional `keras.Model` (including `keras.applications`
            models and `keras_classreg.models`) or a built `keras.Sequential`.
            Subclassed models are not supported (their graph is not known).
        after: the layers to follow with a block: a list of layer names (a
            layer of a nested model may be named `"submodel/layer"`, or by
            its own name when that is unique), or a callable
            `after(layer) -> bool` called on every layer of the model and of
            its nested functional/sequential models, in graph order. Each
            chosen layer must have a single output of rank 5
            `[N, T, H, W, C]` (3D CNNs) or rank 4 `[N, H, W, C]` (2D CNNs).
        affection_rates: one float for all blocks, or one float per block (in
            the order of `after` for a list, in graph order for a callable).
            Default: rates growing with depth by 0.1 and ending at 0.4, the
            design's defaults: `(0.1, 0.2, 0.3, 0.4)` for 4 blocks,
            `(0.2, 0.3, 0.4)` for 3, `(0.4,)` for 1; evenly spaced from 0.1
            to 0.4 for more than 4 blocks.
        classifier: `None` to find the final `Dense` classifier
            automatically (the `Dense` layer that produces a model output,
            possibly through `Activation`, `Softmax`, `Dropout` or
            `Identity` layers), or the name of that layer (or the layer
            itself). It must be a layer of `model` itself, not of a nested
            model, so that a loaded model can re-wire its blocks by name.
        block_options: dict of further `ClassRegularization` arguments for
            every new block: `use_bias`, `stop_classifier_gradient`,
            `normalization_range`, `projection_initializer`.
        share_layers: if `False` (default), the new model gets copies of the
            layers (re-created from their configs) with the weights copied.
            If `True`, it reuses the original layer objects, so the two
            models share their weights (training one changes the other); use
            this for custom layers that cannot be re-created from
            `get_config()`.
        name: name of the new model; default `model.name`.

    Returns:
        a `keras_classreg.ClassRegModel` (functional, not compiled) that
        re-wires its blocks to its classifier when it is loaded.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_classreg import ClassRegularization, add_class_regularization
    >>> inputs = keras.Input((4, 16, 16, 3))
    >>> x = keras.layers.Conv3D(8, 3, padding="same", activation="relu",
    ...                         name="conv1")(inputs)
    >>> x = keras.layers.Conv3D(16, 3, activation="relu", name="conv2")(x)
    >>> x = keras.layers.GlobalAveragePooling3D()(x)
    >>> outputs = keras.layers.Dense(5, activation="softmax")(x)
    >>> base = keras.Model(inputs, outputs)
    >>> model = add_class_regularization(base, ["conv1", "conv2"],
    ...                                  affection_rates=0.0)
    >>> [block.name for block in model.layers
    ...  if isinstance(block, ClassRegularization)]
    ['conv1_classreg', 'conv2_classreg']
    >>> clips = np.random.rand(2, 4, 16, 16, 3).astype("float32")
    >>> bool((model.predict(clips, verbose=0)
    ...       == base.predict(clips, verbose=0)).all())
    True
    """
    graph = _as_functional(model)
    head = _resolve_classifier(model, graph, classifier)
    entries = _layer_entries(graph)
    targets = _resolve_targets(graph, entries, after)
    rates = _resolve_rates(affection_rates, targets)
    options = dict(block_options or {})
    for reserved in ("affection_rate", "classifier", "classifier_features", "name"):
        if reserved in options:
            raise ValueError(
                "Invalid value for argument `block_options`. It sets the "
                f"options shared by all blocks; `{reserved}` is set by "
                "add_class_regularization itself. "
                f"Received: block_options={block_options!r}"
            )
    surgeon = _Surgeon(
        targets,
        rates,
        head,
        options,
        share_layers,
        used_names={entry[0].name for entry in entries} | {graph.name},
    )
    rebuilt = surgeon.rebuild(graph)
    missing = [layer.name for layer in targets if id(layer) not in surgeon.blocks]
    if missing:
        raise ValueError(
            f"Cannot insert Class Regularization after {missing}: not "
            f"connected to the outputs of model '{model.name}' (the layer is "
            "never called on the way from the inputs to the outputs)."
        )
    surgeon.copy_weights()
    new_model = ClassRegModel(rebuilt.input, rebuilt.output, name=name or model.name)
    return wire_classifiers(new_model)


# ----------------------------------------------------------------------
# Checking and resolving the arguments
# ----------------------------------------------------------------------
def _as_functional(model):
    """`model` as a functional graph over its own layers."""
    if isinstance(model, keras.Sequential):
        try:
            inputs, outputs = model.inputs, model.outputs
        except (AttributeError, ValueError) as error:
            raise ValueError(
                f"Sequential model '{model.name}' is not built, so its graph "
                "is unknown. Start it with a `keras.Input(shape)` or call "
                "`model.build(input_shape)` first."
            ) from error
        if not inputs:
            raise ValueError(
                f"Sequential model '{model.name}' has no inputs yet. Start it "
                "with a `keras.Input(shape)` or call `model.build(input_shape)`."
            )
        # one input and output tensor, not lists of one: the model is then
        # called (and exported) with a plain tensor, like the Sequential.
        return keras.Model(
            inputs[0] if len(inputs) == 1 else inputs,
            outputs[0] if len(outputs) == 1 else outputs,
            name=model.name,
        )
    if isinstance(model, Functional):
        return model
    if isinstance(model, keras.Model):
        raise TypeError(
            "add_class_regularization supports "
            f"{_SUPPORTED}. Received a subclassed model of class "
            f"{type(model).__name__} ('{model.name}'), whose graph is only "
            "known to its own `call()`: add `ClassRegularization` layers "
            "there (see the layer's docstring), or rebuild the model "
            "functionally."
        )
    raise TypeError(
        f"Invalid value for argument `model`. Expected {_SUPPORTED}. Received: model={model!r}"
    )


def _is_graph_model(layer):
    return isinstance(layer, (Functional, keras.Sequential))


def _sublayers(model):
    if isinstance(model, keras.Sequential):
        return model.layers
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _layer_entries(model, prefix=""):
    """`(layer, path)` for every layer of `model` and of its nested
    functional/sequential models, in graph order."""
    entries = []
    for layer in _sublayers(model):
        path = f"{prefix}{layer.name}"
        entries.append((layer, path))
        if _is_graph_model(layer):
            entries.extend(_layer_entries(layer, prefix=f"{path}/"))
    return entries


def _producer(tensor):
    history = tensor._keras_history
    return history.operation, history.operation._inbound_nodes[history.node_index]


def _resolve_classifier(model, graph, classifier):
    top_level = _sublayers(graph)
    if classifier is None:
        found = {}
        for output in graph.outputs:
            layer, node = _producer(output)
            while isinstance(layer, _HEAD_PASSTHROUGH) and len(node.input_tensors) == 1:
                layer, node = _producer(node.input_tensors[0])
            if isinstance(layer, keras.layers.Dense):
                found[id(layer)] = layer
        if not found:
            raise ValueError(
                f"Could not find the final Dense classifier of model "
                f"'{model.name}': none of its outputs is produced by a "
                "`keras.layers.Dense` layer (directly or through Activation, "
                "Softmax, Dropout or Identity layers). Class Regularization "
                "needs the class weights of a Dense classifier; name yours "
                "with `classifier=` (a Dense layer of the model itself)."
            )
        if len(found) > 1:
            names = sorted(layer.name for layer in found.values())
            raise ValueError(
                f"Model '{model.name}' has several outputs produced by Dense "
                f"layers ({', '.join(names)}), so its classifier is "
                "ambiguous. Choose one with `classifier=`."
            )
        (layer,) = found.values()
        if not any(layer is candidate for candidate in top_level):
            raise ValueError(
                f"The classifier '{layer.name}' of model '{model.name}' is "
                "inside a nested model; it must be a layer of the model "
                "itself so that a loaded model can re-wire its blocks by name."
            )
        return layer
    if isinstance(classifier, str):
        matches = [layer for layer in top_level if layer.name == classifier]
        if not matches:
            nested = [path for layer, path in _layer_entries(graph) if layer.name == classifier]
            where = (
                f" It exists inside a nested model ({', '.join(nested)}); "
                "the classifier must be a layer of the model itself."
                if nested
                else ""
            )
            raise ValueError(
                "Invalid value for argument `classifier`. Model "
                f"'{model.name}' has no layer named {classifier!r}.{where}"
                f"{_did_you_mean(classifier, [layer.name for layer in top_level])}"
            )
        layer = matches[0]
    else:
        layer = classifier
        if not any(layer is candidate for candidate in top_level):
            raise ValueError(
                "Invalid value for argument `classifier`. Expected the name "
                f"of a Dense layer of model '{model.name}' or that layer "
                f"itself. Received a layer that is not in the model: "
                f"classifier={classifier!r}"
            )
    if not isinstance(layer, keras.layers.Dense):
        raise ValueError(
            "Invalid value for argument `classifier`. Expected a "
            "`keras.layers.Dense` layer (the model's final classifier). "
            f"Received: layer '{layer.name}' of class {type(layer).__name__}"
        )
    return layer


def _did_you_mean(name, names):
    close = difflib.get_close_matches(name, names, n=3)
    if close:
        return " Did you mean: " + ", ".join(repr(c) for c in close) + "?"
    return ""


def _resolve_targets(graph, entries, after):
    if callable(after) and not isinstance(after, str):
        targets = []
        for layer, _ in entries:
            if after(layer):
                if any(layer is t for t in targets):
                    continue  # a nested model's layer listed twice
                targets.append(layer)
        if not targets:
            raise ValueError(
                "Invalid value for argument `after`: the callable chose no "
                f"layer of model '{graph.name}'. It is called as "
                "`after(layer)` on every layer and must return True for the "
                "layers to follow with a Class Regularization block."
            )
        return targets
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, (list, tuple)) or not after:
        raise ValueError(
            "Invalid value for argument `after`. Expected a non-empty list "
            "of layer names or a callable `after(layer) -> bool`. "
            f"Received: after={after!r}"
        )
    targets = []
    for item in after:
        if not isinstance(item, str):
            raise ValueError(
                "Invalid value for argument `after`. Expected layer names "
                f"(strings). Received an item {item!r} in after={after!r}"
            )
        matches = [layer for layer, path in entries if path == item]
        if not matches:
            matches = [layer for layer, path in entries if layer.name == item]
        if not matches:
            raise ValueError(_unknown_layer_message(graph, entries, item))
        if len({id(layer) for layer in matches}) > 1:
            paths = [path for layer, path in entries if layer.name == item]
            raise ValueError(
                f"Invalid value for argument `after`: several layers of model "
                f"'{graph.name}' are named {item!r} ({', '.join(paths)}). "
                "Name one by its path, e.g. 'submodel/layer'."
            )
        layer = matches[0]
        if any(layer is t for t in targets):
            raise ValueError(
                f"Invalid value for argument `after`: layer {item!r} is "
                f"chosen twice. Received: after={after!r}"
            )
        targets.append(layer)
    return targets


def _unknown_layer_message(graph, entries, item):
    if item in [tensor._keras_history.operation.name for tensor in graph.inputs]:
        return (
            f"Invalid value for argument `after`: {item!r} is an input of "
            f"model '{graph.name}'; a Class Regularization block follows a "
            "layer's activations. Name a layer instead."
        )
    reachable = {id(layer) for layer, _ in entries}
    hidden = [
        (layer, owner)
        for owner, _ in entries
        for layer in owner._flatten_layers(include_self=False, recursive=True)
        if id(layer) not in reachable and layer.name == item.split("/")[-1]
    ]
    if hidden:
        layer, owner = hidden[0]
        return (
            f"Invalid value for argument `after`: layer {item!r} is inside "
            f"'{owner.name}' ({type(owner).__name__}), which "
            "add_class_regularization cannot enter: it inserts blocks in the "
            "model's own layers and in nested functional or sequential "
            "models only."
        )
    names = [path for _, path in entries]
    return (
        f"Invalid value for argument `after`: model '{graph.name}' has no "
        f"layer named {item!r}.{_did_you_mean(item, names)} Layers of nested "
        "models can be named 'submodel/layer'."
    )


def _default_rates(count):
    if count <= 4:
        return tuple(round(0.4 - 0.1 * (count - 1 - i), 10) for i in range(count))
    step = 0.3 / (count - 1)
    return tuple(round(0.1 + step * i, 10) for i in range(count))


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _resolve_rates(affection_rates, targets):
    if affection_rates is None:
        return _default_rates(len(targets))
    if _is_number(affection_rates):
        return (float(affection_rates),) * len(targets)
    try:
        # numbers (NumPy ones too) as floats; anything else is left for the
        # layer to reject with its own message
        rates = tuple(float(r) if _is_number(r) else r for r in affection_rates)
    except TypeError:
        rates = None
    if rates is None or len(rates) != len(targets):
        names = ", ".join(repr(layer.name) for layer in targets)
        raise ValueError(
            "Invalid value for argument `affection_rates`. Expected one "
            f"float for all blocks or one per block ({len(targets)} blocks, "
            f"after {names}). Received: affection_rates={affection_rates!r}"
        )
    return rates


# ----------------------------------------------------------------------
# Rebuilding the graph
# ----------------------------------------------------------------------
class _Surgeon:
    """Re-creates a functional graph layer by layer, inserting blocks."""

    def __init__(self, targets, rates, classifier, options, share_layers, used_names):
        self.rates = {id(layer): rate for layer, rate in zip(targets, rates)}
        self.targets = {id(layer): layer for layer in targets}
        self.classifier = classifier
        self.options = options
        self.share_layers = share_layers
        self.used_names = set(used_names)
        self.copies = {}  # id(original) -> its copy (or itself)
        self.originals = {}  # id(copy) -> original
        self.blocks = {}  # id(original target) -> its block
        self.rebuilt_models = set()  # ids of nested models rebuilt here

    def rebuild(self, graph):
        """A functional copy of `graph` with the blocks inserted."""
        return keras.models.clone_model(
            graph, clone_function=self.copy_layer, call_function=self.call_layer
        )

    def _contains_target(self, model):
        return any(id(layer) in self.targets for layer, _ in _layer_entries(model))

    def copy_layer(self, layer):
        if id(layer) in self.copies:
            return self.copies[id(layer)]
        if _is_graph_model(layer) and self._contains_target(layer):
            copy = self.rebuild(_as_functional(layer))
            self.rebuilt_models.add(id(layer))
        elif self.share_layers:
            copy = layer
        else:
            try:
                copy = layer.__class__.from_config(layer.get_config())
            except Exception as error:
                raise ValueError(
                    f"Cannot re-create layer '{layer.name}' (class "
                    f"{type(layer).__name__}) from its config: {error}. Give "
                    "the layer a `get_config()` that returns its constructor "
                    "arguments, or pass `share_layers=True` to reuse the "
                    "original layer objects (the new model then shares their "
                    "weights with the old one)."
                ) from error
        self.copies[id(layer)] = copy
        self.originals[id(copy)] = layer
        return copy

    def call_layer(self, layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        original = self.originals.get(id(layer), layer)
        if id(original) not in self.targets:
            return outputs
        if isinstance(outputs, (list, tuple, dict)):
            raise ValueError(
                f"Cannot insert Class Regularization after layer "
                f"'{original.name}': it has several outputs; the block needs "
                "one output of rank 5 `[N, T, H, W, C]` or rank 4 "
                "`[N, H, W, C]`."
            )
        if len(outputs.shape) not in (4, 5) or outputs.shape[-1] is None:
            raise ValueError(
                f"Cannot insert Class Regularization after layer "
                f"'{original.name}': its output has shape "
                f"{tuple(outputs.shape)}; expected rank 5 `[N, T, H, W, C]` "
                "(3D CNNs) or rank 4 `[N, H, W, C]` (2D CNNs) with a known "
                "number of channels."
            )
        return self._block_for(original)(outputs)

    def _block_for(self, original):
        if id(original) not in self.blocks:
            features = int(self.classifier.kernel.shape[0])
            self.blocks[id(original)] = ClassRegularization(
                affection_rate=self.rates[id(original)],
                classifier=self.copy_layer(self.classifier),
                classifier_features=features,
                name=self._unique_name(f"{original.name}_classreg"),
                **self.options,
            )
        return self.blocks[id(original)]

    def _unique_name(self, base):
        candidate, index = base, 1
        while candidate in self.used_names:
            candidate, index = f"{base}_{index}", index + 1
        self.used_names.add(candidate)
        return candidate

    def copy_weights(self):
        """Copies the weights of every re-created layer from its original."""
        if self.share_layers:
            return
        for key, copy in self.copies.items():
            original = self.originals[id(copy)]
            if key in self.rebuilt_models:
                continue  # its layers are copied one by one
            weights = original.get_weights()
            if len(weights) != len(copy.weights):
                raise ValueError(
                    f"Layer '{original.name}' (class {type(original).__name__}) "
                    f"has {len(weights)} weights but its copy re-created from "
                    f"its config has {len(copy.weights)}; its `get_config()` "
                    "does not describe it fully. Pass `share_layers=True` to "
                    "reuse the original layers."
                )
            copy.set_weights(weights)
