"""`SpaceToDepthConv3D`: a `Conv3D` whose strided gradients stay fast on CPUs.

On CPUs the gradients of a strided 3D convolution can be tens of times
slower than the convolution itself, in TensorFlow's kernels and in XLA's
alike, depending on the shape: TensorFlow's `Conv3DBackpropFilterV2` for
I3D's 7x7x7 stride-2 stem, and XLA's input gradient of a 3x3x3 stride-2
convolution, which XLA runs as a plain loop. `python -m
benchmarks.layer_cliffs --plain-conv3d --docs docs/benchmarks/layer_cliffs.md`
measures every zoo layer as a plain `Conv3D` (the cliffs), and without
`--plain-conv3d` as this layer.

A strided convolution equals a stride-1 convolution on a *space-to-depth*
rearrangement of its (padded) input: with stride `s` and kernel size `k`
along an axis, input position `s*i + r` becomes position `i`, channel block
`r`, and the kernel becomes `ceil(k / s)` taps over `s` times the channels
(the taps past `k` are zero). Stride-1 convolutions and their gradients
are fast in both TensorFlow and XLA, so this layer computes its gradients
(input and kernel) through that formulation, while its forward pass stays
the ordinary convolution (the fastest forward in both). Along an axis with
kernel size 1 the rearrangement is a strided slice; kernel taps that only
ever see padding (e.g. a 3-tap temporal kernel on a 1-frame input) are
dropped first. Under XLA the forward pass drops them too: XLA's CPU code
computes the dropped taps' products anyway, and a 3-tap temporal kernel on
a 1-frame input then costs three times the arithmetic and far more time
(the `layer_cliffs` rows of the deepest stages).

Weights, config and outputs are those of `keras.layers.Conv3D` (the layer is
a subclass; `get_weights()` of one loads into the other); stride-1 layers,
dilated layers, `channels_first` data and non-TensorFlow backends use the
plain convolution throughout.
"""

import math

import keras


def _axis_plan(size, kernel, stride, padding, rearrange):
    """How one spatial axis is computed: `(before, after, first_tap, taps,
    factor, step)`.

    The input is padded by `before`/`after` (negative: cropped), the kernel
    restricted to the `taps` taps from `first_tap` that touch the input for
    at least one output position (the others only ever see padding). With
    `rearrange`, a strided axis with more than one tap is then rearranged by
    `factor = stride` (space-to-depth) and one with a single tap sliced with
    `step = stride`; without, the axis keeps its stride (`factor = step =
    1`) for a strided `VALID` convolution.
    """
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        before = total // 2
    else:
        out = (size - kernel) // stride + 1
        before = 0
    used = [
        tap
        for tap in range(kernel)
        if any(0 <= o * stride + tap - before < size for o in range(out))
    ]
    first, taps = used[0], used[-1] - used[0] + 1
    before -= first
    factor, step = 1, 1
    length = (out - 1) * stride + taps
    if rearrange and stride > 1:
        if taps > 1:
            factor = stride
            length = stride * (out + -(-taps // stride) - 1)
        else:
            step = stride
    return before, length - size - before, first, taps, factor, step


def _plans(x, kernel, strides, padding, rearrange):
    return [
        _axis_plan(size, k, s, padding, rearrange)
        for size, k, s in zip(x.shape[1:4], kernel.shape[:3], strides)
    ]


def _pad_crop_prune(x, kernel, plans):
    """`x` padded/cropped and sliced, `kernel` restricted to the used taps."""
    import tensorflow as tf

    pads = [[0, 0]] + [[max(p[0], 0), max(p[1], 0)] for p in plans] + [[0, 0]]
    if any(any(pair) for pair in pads):
        x = tf.pad(x, pads)
    crops = [slice(None)]
    for before, after, _, _, _, step in plans:
        crops.append(
            slice(
                max(-before, 0) or None,
                (x.shape[len(crops)] - max(-after, 0)) if after < 0 else None,
                step if step > 1 else None,
            )
        )
    crops.append(slice(None))
    if any(c != slice(None) for c in crops):
        x = x[tuple(crops)]
    taps = tuple(slice(p[2], p[2] + p[3]) for p in plans)
    if any(t != slice(0, k) for t, k in zip(taps, kernel.shape[:3])):
        kernel = kernel[taps]
    return x, kernel


def pruned_convolution(x, kernel, strides, padding):
    """`conv3d(x, kernel, strides, padding)` (channels-last, any feature
    groups) as a `VALID` convolution of the explicitly padded input with
    the kernel taps that only ever see padding dropped (TensorFlow tensors;
    static spatial sizes)."""
    x, kernel = _pad_crop_prune(x, kernel, _plans(x, kernel, strides, padding, False))
    return keras.ops.conv(x, kernel, strides=tuple(strides), padding="valid")


def _matmul_convolution(x, kernel, groups):
    """A stride-1 `VALID` convolution as one matrix product of the input's
    patches (im2col) with the kernel (batched over feature groups)."""
    import tensorflow as tf

    taps = kernel.shape[:3]
    out = [x.shape[1 + i] - taps[i] + 1 for i in range(3)]
    channels, outputs = x.shape[-1], kernel.shape[-1]
    per_group = channels // groups
    patches = tf.stack(
        [
            x[:, a : a + out[0], b : b + out[1], c : c + out[2], :]
            for a in range(taps[0])
            for b in range(taps[1])
            for c in range(taps[2])
        ],
        axis=-2,
    )
    count = math.prod(taps)
    # [N, T, H, W, taps, G, C/G] -> [G, N*T*H*W, taps*C/G]
    patches = tf.reshape(patches, [-1, count, groups, per_group])
    patches = tf.reshape(tf.transpose(patches, [2, 0, 1, 3]), [groups, -1, count * per_group])
    # [taps, C/G, G, O/G] -> [G, taps*C/G, O/G]
    weights = tf.reshape(kernel, [count, per_group, groups, outputs // groups])
    weights = tf.reshape(
        tf.transpose(weights, [2, 0, 1, 3]), [groups, count * per_group, outputs // groups]
    )
    y = tf.matmul(patches, weights)  # [G, N*T*H*W, O/G]
    y = tf.transpose(y, [1, 0, 2])
    return tf.reshape(y, [-1, *out, outputs])


def space_to_depth_convolution(x, kernel, strides, padding, groups=1, matmul=False):
    """`conv3d(x, kernel, strides, padding)` (channels-last, `groups`
    feature groups) computed as a stride-1 `VALID` convolution of a
    space-to-depth rearrangement of `x` (TensorFlow tensors; static
    spatial and channel sizes); with `matmul`, that convolution is one
    matrix product of the input's patches."""
    import tensorflow as tf

    plans = _plans(x, kernel, strides, padding, True)
    x, kernel = _pad_crop_prune(x, kernel, plans)
    factors = [p[4] for p in plans]
    if any(f > 1 for f in factors):
        batch = tf.shape(x)[0]
        channels = x.shape[-1]
        per_group = channels // groups
        sizes = [x.shape[1 + i] // f for i, f in enumerate(factors)]
        # [N, T/ft, ft, H/fh, fh, W/fw, fw, G, C/G] -> [N, T', H', W', G, ft, fh, fw, C/G]
        x = tf.reshape(
            x,
            [
                batch,
                sizes[0],
                factors[0],
                sizes[1],
                factors[1],
                sizes[2],
                factors[2],
                groups,
                per_group,
            ],
        )
        x = tf.transpose(x, [0, 1, 3, 5, 7, 2, 4, 6, 8])
        x = tf.reshape(x, [batch, *sizes, channels * math.prod(factors)])
        # kernel [kt, kh, kw, C/G, O] -> [qt, ft, qh, fh, qw, fw, C/G, O]
        # (zero taps past the end) -> [qt, qh, qw, ft*fh*fw*C/G, O]
        taps = kernel.shape[:3]
        grouped = [-(-k // f) for k, f in zip(taps, factors)]
        kernel = tf.pad(
            kernel, [[0, q * f - k] for q, f, k in zip(grouped, factors, taps)] + [[0, 0], [0, 0]]
        )
        outputs = kernel.shape[-1]
        kernel = tf.reshape(
            kernel,
            [
                grouped[0],
                factors[0],
                grouped[1],
                factors[1],
                grouped[2],
                factors[2],
                per_group,
                outputs,
            ],
        )
        kernel = tf.transpose(kernel, [0, 2, 4, 1, 3, 5, 6, 7])
        kernel = tf.reshape(kernel, [*grouped, math.prod(factors) * per_group, outputs])
    if matmul:
        return _matmul_convolution(x, kernel, groups)
    # keras.ops.conv: TensorFlow has no grouped Conv3D gradient kernels for
    # the CPU, Keras runs grouped convolutions through XLA there
    return keras.ops.conv(x, kernel, strides=1, padding="valid")


# Under XLA, convolutions with at most this many output positions per clip
# (forward pass and gradients) go through a matrix product of patches: XLA's
# CPU code for them is slow on small spatial sizes (the last stages of the
# zoo's models), and the product wins there; from about 4x28x28 outputs on
# it no longer does (`benchmarks.layer_cliffs` rows with and without it).
MATMUL_GRADIENT_MAX_OUTPUTS = 1024


# Under XLA, strided convolutions of at most this many input channels (the
# stems, on RGB clips) also run their forward pass through space-to-depth:
# the rearranged convolution sees `stride` times more channels, which XLA's
# CPU code uses far better than 3; with 64 input channels the rearrangement
# costs more than it saves (`benchmarks.layer_cliffs`, the stems' rows).
FEW_CHANNELS = 4


def _output_size(size, kernel, stride, padding):
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def _in_xla():
    """Whether the layer is being traced for an XLA computation."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    return not tf.executing_eagerly() and control_flow_util.GraphOrParentsInXlaContext(
        tf.compat.v1.get_default_graph()
    )


@keras.saving.register_keras_serializable(package="keras_classreg")
class SpaceToDepthConv3D(keras.layers.Conv3D):
    """`keras.layers.Conv3D` with the gradients of strided convolutions
    computed as stride-1 convolutions on a space-to-depth rearrangement (see
    the module docstring): same arguments, weights and outputs, no CPU
    cliff in training.

    Example:

    >>> import numpy as np
    >>> layer = SpaceToDepthConv3D(8, 3, strides=2, padding="same")
    >>> layer(np.zeros((1, 4, 8, 8, 3), "float32")).shape
    (1, 2, 4, 4, 8)
    """

    def _plan(self, inputs):
        """`(strided, pruned, matmul)` for this input: whether the
        gradients go through space-to-depth (strided) or a matrix product
        of patches (`matmul`: under XLA, small outputs), and whether the
        forward pass drops padding-only taps (`pruned`: under XLA). All
        False: the plain convolution."""
        if (
            keras.backend.backend() != "tensorflow"
            or any(d != 1 for d in self.dilation_rate)
            or self.data_format != "channels_last"
            or any(size is None for size in inputs.shape[1:])
        ):
            return False, False, False
        plans = [
            _axis_plan(size, k, s, self.padding, False)
            for size, k, s in zip(inputs.shape[1:4], self.kernel_size, self.strides)
        ]
        xla = _in_xla()
        # TensorFlow's kernels need no pruning (and the FLOPs profiler then
        # counts the convolution as written); XLA's do
        pruned = xla and any(p[3] < k for p, k in zip(plans, self.kernel_size))
        outputs = math.prod(
            _output_size(size, k, s, self.padding)
            for size, k, s in zip(inputs.shape[1:4], self.kernel_size, self.strides)
        )
        matmul = xla and outputs <= MATMUL_GRADIENT_MAX_OUTPUTS and math.prod(self.kernel_size) > 1
        return any(s > 1 for s in self.strides), pruned, matmul

    def convolution_op(self, inputs, kernel):
        strided, pruned, matmul = self._plan(inputs)
        if not (strided or pruned or matmul):
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf

        strides, padding, groups = tuple(self.strides), self.padding, self.groups
        if strided and _in_xla() and inputs.shape[-1] <= FEW_CHANNELS:
            # XLA's CPU code is slow on few input channels (a stem on RGB
            # clips): rearranged, the convolution sees stride x more
            def forward(x, w):
                return space_to_depth_convolution(x, w, strides, padding, groups)
        elif matmul:
            # XLA's CPU code is slow on small outputs in the forward pass
            # too (the deepest stages' rows of benchmarks.layer_cliffs)
            def forward(x, w):
                return space_to_depth_convolution(x, w, strides, padding, groups, matmul=True)
        elif pruned:

            def forward(x, w):
                return pruned_convolution(x, w, strides, padding)
        else:
            forward = super().convolution_op
        if not (strided or matmul):
            return forward(inputs, kernel)

        @tf.custom_gradient
        def convolve(x, w):
            def gradients(upstream):
                with tf.GradientTape() as tape:
                    tape.watch([x, w])
                    y = space_to_depth_convolution(x, w, strides, padding, groups, matmul=matmul)
                return tape.gradient(y, [x, w], output_gradients=upstream)

            return forward(x, w), gradients

        return convolve(inputs, tf.convert_to_tensor(kernel))
