"""`ZeroPaddingShortcut`: the parameter-free residual shortcut ("type A")."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_classreg")
class ZeroPaddingShortcut(keras.layers.Layer):
    """Subsamples a clip's feature map and appends zero channels.

    The shortcut of He et al.'s option A, used by Hara et al.'s 3D ResNets
    (`--resnet_shortcut A`, e.g. their published ResNet-18/34 Kinetics
    weights): where a residual block changes the stride or the number of
    channels, the shortcut keeps every `strides`-th position along T, H and W
    (a 1x1x1 average pool with that stride) and pads the channel axis with
    zeros up to `filters`. It has no weights.

    Args:
        filters: number of output channels (at least the input's).
        strides: int or 3 ints, the subsampling step along T, H, W.

    Call arguments:
        inputs: `[N, T, H, W, C]` feature maps, channels last.

    Example:

    >>> import numpy as np
    >>> layer = ZeroPaddingShortcut(filters=4, strides=2)
    >>> x = np.ones((1, 4, 4, 4, 2), "float32")
    >>> y = layer(x)
    >>> tuple(y.shape), float(y[..., :2].numpy().min()), float(y[..., 2:].numpy().max())
    ((1, 2, 2, 2, 4), 1.0, 0.0)
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(
                "Invalid value for argument `filters`. Expected a positive int. "
                f"Received: filters={filters!r}"
            )
        if isinstance(strides, int):
            strides = (strides,) * 3
        strides = tuple(strides)
        if len(strides) != 3 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in strides
        ):
            raise ValueError(
                "Invalid value for argument `strides`. Expected a positive int or "
                f"3 positive ints. Received: strides={strides!r}"
            )
        self.filters = filters
        self.strides = strides

    def build(self, input_shape):
        if len(input_shape) != 5 or input_shape[-1] is None:
            raise ValueError(
                f"ZeroPaddingShortcut '{self.name}' expects `[N, T, H, W, C]` "
                f"inputs with known C. Received: input_shape={tuple(input_shape)!r}"
            )
        if input_shape[-1] > self.filters:
            raise ValueError(
                f"ZeroPaddingShortcut '{self.name}' pads channels up to "
                f"filters={self.filters}, but its input already has "
                f"{input_shape[-1]} channels."
            )

    def call(self, inputs):
        st, sh, sw = self.strides
        x = inputs[:, ::st, ::sh, ::sw, :]
        extra = self.filters - x.shape[-1]
        if extra:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        dims = [
            None if size is None else -(-size // step)
            for size, step in zip(input_shape[1:4], self.strides)
        ]
        return (input_shape[0], *dims, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config
