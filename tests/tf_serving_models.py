"""SavedModels like TF Serving's test data, built here (TF1 graphs with
`SavedModelBuilder`, TF2 modules with `tf.saved_model.save`), for the
server tests: y = a * x + b with a = 0.5, b = 2 (half plus two)."""

import os

import tensorflow as tf

FEATURES = {
    "x": tf.io.FixedLenFeature([1], tf.float32),
    "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
}


def half_plus_two_tf1(export_dir, b=2.0):
    """A TF1 graph (Session, reference variables) with TF Serving's
    half_plus_two signatures: `serving_default` (x -> y, shape [-1, 1]),
    `classify_x_to_y` (tf.Example -> scores), `regress_x_to_y`,
    `regress_x_to_y2` (tf.Example -> outputs), `regress_x2_to_y3` (a float
    input: not an Example signature), plus `typed` (x -> outputs of
    several dtypes) and `two_inputs` (x, x2 -> y)."""
    utils = tf.compat.v1.saved_model
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        a = tf.compat.v1.Variable(0.5, name="a")
        b = tf.compat.v1.Variable(b, name="b")
        c = tf.compat.v1.Variable(3.0, name="c")
        examples = tf.compat.v1.placeholder(tf.string, [None], "tf_example")
        parsed = tf.io.parse_example(examples, FEATURES)
        x = tf.identity(parsed["x"], "x")
        y = tf.identity(a * x + b, "y")
        y2 = tf.identity(a * x + c, "y2")
        x2 = tf.identity(parsed["x2"], "x2")
        y3 = tf.identity(a * x2 + c, "y3")
        ints = tf.cast(x * 10, tf.int32, name="ints")
        int64s = tf.cast(x, tf.int64, name="int64s")
        strings = tf.strings.as_string(x, precision=1, name="strings")
        bools = tf.greater(x, 2.5, name="bools")
        doubles = tf.cast(y, tf.float64, name="doubles")
        session.run(tf.compat.v1.global_variables_initializer())
        info = utils.build_tensor_info

        def signature(inputs, outputs, method=tf.saved_model.PREDICT_METHOD_NAME):
            return utils.build_signature_def(
                {k: info(v) for k, v in inputs.items()},
                {k: info(v) for k, v in outputs.items()},
                method,
            )

        signatures = {
            tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: signature({"x": x}, {"y": y}),
            "classify_x_to_y": utils.classification_signature_def(examples, None, y),
            "regress_x_to_y": utils.regression_signature_def(examples, y),
            "regress_x_to_y2": utils.regression_signature_def(examples, y2),
            "regress_x2_to_y3": signature(
                {tf.saved_model.REGRESS_INPUTS: x2},
                {tf.saved_model.REGRESS_OUTPUTS: y3},
                tf.saved_model.REGRESS_METHOD_NAME,
            ),
            "typed": signature(
                {"x": x},
                {
                    "y": y,
                    "ints": ints,
                    "int64s": int64s,
                    "strings": strings,
                    "bools": bools,
                    "doubles": doubles,
                },
            ),
            "two_inputs": signature({"x": x, "x2": x2}, {"y": y, "y3": y3}),
        }
        builder = utils.Builder(os.fspath(export_dir))
        builder.add_meta_graph_and_variables(
            session, [tf.saved_model.SERVING], signature_def_map=signatures
        )
        builder.save()
    return export_dir


class _HalfPlusTwo(tf.Module):
    def __init__(self):
        super().__init__()
        self.a = tf.Variable(0.5)
        self.b = tf.Variable(2.0)
        self.c = tf.Variable(3.0)

    @tf.function(input_signature=[tf.TensorSpec([1], tf.float32)])
    def predict(self, x):
        return {"y": self.a * x + self.b}

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=tf.saved_model.REGRESS_INPUTS)]
    )
    def regress(self, serialized):
        x = tf.io.parse_example(serialized, FEATURES)["x"]
        return {tf.saved_model.REGRESS_OUTPUTS: self.a * x + self.b}

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=tf.saved_model.CLASSIFY_INPUTS)]
    )
    def classify(self, serialized):
        x = tf.io.parse_example(serialized, FEATURES)["x"]
        scores = tf.concat([self.a * x + self.b, self.a * x + self.c], axis=1)
        classes = tf.tile(tf.constant([["two", "three"]]), [tf.shape(x)[0], 1])
        return {
            tf.saved_model.CLASSIFY_OUTPUT_SCORES: scores,
            tf.saved_model.CLASSIFY_OUTPUT_CLASSES: classes,
        }


def half_plus_two_tf2(export_dir):
    """A TF2 module (every signature's method_name is predict):
    `serving_default` (x of shape [1] -> y), `regress_x_to_y`,
    `classify_x_to_y` (two classes, 'two' and 'three', with scores y and
    y + 1)."""
    module = _HalfPlusTwo()
    tf.saved_model.save(
        module,
        os.fspath(export_dir),
        signatures={
            tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: module.predict,
            "regress_x_to_y": module.regress,
            "classify_x_to_y": module.classify,
        },
    )
    return export_dir


def example(x):
    """A `tf.train.Example` with the float feature x."""
    result = tf.train.Example()
    result.features.feature["x"].float_list.value.append(x)
    return result


class _Slow(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def loop(self, x):
        """x[0] iterations of a 256x256 matmul (about 1 ms each), in a
        `tf.while_loop` (cancellable between iterations); y = x."""
        steps = tf.cast(x[0], tf.int32)
        start = tf.ones([256, 256]) / 256.0

        def body(i, y):
            return i + 1, tf.tanh(tf.matmul(y, y))

        _, y = tf.while_loop(lambda i, y: i < steps, body, (0, start))
        return {"y": x + 0.0 * tf.reduce_sum(y)}


def slow_loop_tf2(export_dir):
    """A TF2 model whose `serving_default` (x float [n] -> y = x) runs x[0]
    loop iterations of about 1 ms: a request as long as it asks for."""
    module = _Slow()
    tf.saved_model.save(
        module,
        os.fspath(export_dir),
        signatures={tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: module.loop},
    )
    return export_dir


def slow_loop_tf1(export_dir):
    """A TF1 graph (Session) like `slow_loop_tf2`: `serving_default` runs
    x[0] loop iterations of a 256x256 matmul; y = x."""
    utils = tf.compat.v1.saved_model
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        x = tf.compat.v1.placeholder(tf.float32, [None], "x")
        steps = tf.cast(x[0], tf.int32)
        _, y = tf.compat.v1.while_loop(
            lambda i, y: i < steps,
            lambda i, y: (i + 1, tf.tanh(tf.matmul(y, y))),
            (0, tf.ones([256, 256]) / 256.0),
        )
        out = tf.identity(x + 0.0 * tf.reduce_sum(y), "y")
        builder = utils.Builder(os.fspath(export_dir))
        builder.add_meta_graph_and_variables(
            session,
            [tf.saved_model.SERVING],
            signature_def_map={
                tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: utils.build_signature_def(
                    {"x": utils.build_tensor_info(x)},
                    {"y": utils.build_tensor_info(out)},
                    tf.saved_model.PREDICT_METHOD_NAME,
                )
            },
        )
        builder.save()
    return export_dir


class _OneKernel(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def matmul(self, x):
        """One n x n matmul (n = x[0]): a single kernel, which TensorFlow
        cannot cancel midway (seconds for n in the thousands); y = x."""
        n = tf.cast(x[0], tf.int32)
        m = tf.fill(tf.stack([n, n]), 1.0 / tf.cast(n, tf.float32))
        return {"y": x + 0.0 * tf.reduce_sum(tf.matmul(m, m))}


def one_kernel_tf2(export_dir):
    """A TF2 model whose `serving_default` (x float [k] -> y = x) runs one
    x[0] x x[0] matmul: with a large x[0], a call that ignores its
    deadline."""
    module = _OneKernel()
    tf.saved_model.save(
        module,
        os.fspath(export_dir),
        signatures={tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: module.matmul},
    )
    return export_dir
