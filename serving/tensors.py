"""`TensorProto` <-> NumPy, the way TensorFlow Serving encodes tensors.

TF Serving answers Predict with `Tensor::AsProtoField`: the values go in
the typed repeated field of the dtype (`float_val`, `int_val`,
`string_val`, ...) unless it was started with
`--enable_serialization_as_tensor_content`, which packs numeric values into
`tensor_content` (`Tensor::AsProtoTensorContent`). Requests may use either
form; `to_array` reads both (`tf.make_ndarray`).

>>> import numpy as np
>>> proto = to_proto(np.array([[1.5, 2.0]], np.float32))
>>> list(proto.float_val), [d.size for d in proto.tensor_shape.dim]
([1.5, 2.0], [1, 2])
>>> to_proto(np.array([1, 2], np.int32), as_content=True).tensor_content
b'\\x01\\x00\\x00\\x00\\x02\\x00\\x00\\x00'
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.errors import invalid_argument

# dtype enum -> the typed field `Tensor::AsProtoField` fills.
_FIELDS = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
    types_pb2.DT_COMPLEX64: "scomplex_val",
    types_pb2.DT_COMPLEX128: "dcomplex_val",
}


def dtype_enum(array):
    """The `DataType` enum of a NumPy array (object/bytes/str: DT_STRING)."""
    if array.dtype.kind in "OSU":
        return types_pb2.DT_STRING
    return tf.as_dtype(array.dtype).as_datatype_enum


def to_proto(array, as_content=False):
    """A NumPy array (or anything `np.asarray` takes) as a `TensorProto`.

    Args:
        array: the value.
        as_content: pack numeric values into `tensor_content` (TF Serving's
            `--enable_serialization_as_tensor_content`); strings always go
            in `string_val`.
    """
    array = np.asarray(array)
    proto = tensor_pb2.TensorProto()
    dtype = dtype_enum(array)
    proto.dtype = dtype
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(_as_bytes(value) for value in array.ravel())
        return proto
    if as_content:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
        return proto
    field = _FIELDS.get(dtype)
    if field is None:
        raise invalid_argument(
            f"Cannot encode a tensor of dtype {tf.as_dtype(dtype).name} as a typed proto field."
        )
    flat = array.ravel()
    if field == "half_val":  # the 16-bit patterns, as TensorFlow stores them
        flat = flat.view(np.uint16).astype(np.int32)
    elif field in ("scomplex_val", "dcomplex_val"):
        flat = np.stack([flat.real, flat.imag], axis=-1).ravel()
    target = getattr(proto, field)
    for start in range(0, flat.size, _CHUNK):  # no list of every value at once
        target.extend(flat[start : start + _CHUNK].tolist())
    return proto


_CHUNK = 1 << 16
# Bytes per element of a string tensor besides its characters (TensorFlow's
# tstring, or a NumPy object slot and the bytes object's header).
STRING_ELEMENT_OVERHEAD = 40
_INT_VAL_RANGES = {
    types_pb2.DT_INT8: (-(2**7), 2**7 - 1),
    types_pb2.DT_UINT8: (0, 2**8 - 1),
    types_pb2.DT_INT16: (-(2**15), 2**15 - 1),
    types_pb2.DT_UINT16: (0, 2**16 - 1),
}
# Bytes one stored value of each typed field takes in the parsed proto.
_FIELD_ITEM_BYTES = {
    "float_val": 4,
    "double_val": 8,
    "int_val": 4,
    "int64_val": 8,
    "uint32_val": 4,
    "uint64_val": 8,
    "bool_val": 1,
    "half_val": 4,
    "scomplex_val": 4,
    "dcomplex_val": 8,
}
_VALUE_FIELDS = (
    "float_val",
    "double_val",
    "int_val",
    "int64_val",
    "uint32_val",
    "uint64_val",
    "bool_val",
    "half_val",
    "scomplex_val",
    "dcomplex_val",
    "string_val",
    "resource_handle_val",
    "variant_val",
    "float8_val",
)


class TensorSize:
    """What a `TensorProto` declares, read without decoding it.

    Attributes:
        shape: the dimensions.
        elements: their product.
        decoded_bytes: the decoded tensor's size (elements x dtype size; for
            strings their characters plus a per-element overhead).
        stored_bytes: what the proto's values take now (as parsed).
    """

    __slots__ = ("shape", "elements", "decoded_bytes", "stored_bytes")

    def __init__(self, shape, elements, decoded_bytes, stored_bytes):
        self.shape, self.elements = shape, elements
        self.decoded_bytes, self.stored_bytes = decoded_bytes, stored_bytes


def _parse_error(name, reason):
    return invalid_argument(f"tensor parsing error: {name} ({reason})")


def tensor_size(proto, name="tensor"):
    """Checks what a `TensorProto` declares and returns its `TensorSize`,
    allocating nothing: INVALID_ARGUMENT (TF Serving's "tensor parsing
    error: NAME", with the reason) for an unknown rank, a negative
    dimension, values given both in `tensor_content` and a typed field,
    `tensor_content` whose length is not elements x dtype size, values in a
    field of another dtype, or a dtype that cannot come from a client."""
    shape_proto = proto.tensor_shape
    if shape_proto.unknown_rank:
        raise _parse_error(name, "the shape has an unknown rank")
    shape = []
    elements = 1
    for dim in shape_proto.dim:
        if dim.size < 0:
            raise _parse_error(name, f"dimension {len(shape)} is {dim.size}; sizes must be >= 0")
        shape.append(int(dim.size))
        elements *= int(dim.size)
    dtype = proto.dtype
    if dtype in (types_pb2.DT_INVALID, types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT) or dtype > 100:
        raise _parse_error(
            name,
            "dtype "
            + (
                types_pb2.DataType.Name(dtype)
                if dtype in types_pb2.DataType.values()
                else str(dtype)
            )
            + " cannot be sent in a request",
        )
    try:
        itemsize = tf.as_dtype(dtype).size
    except TypeError:
        raise _parse_error(name, f"unknown dtype {dtype}") from None
    expected = _FIELDS.get(dtype)
    given = [field for field in _VALUE_FIELDS if len(getattr(proto, field))]
    content = len(proto.tensor_content)
    if content and given:
        raise _parse_error(name, "values given both in tensor_content and in " + ", ".join(given))
    if given and (len(given) > 1 or given[0] != expected):
        raise _parse_error(
            name,
            f"a {tf.as_dtype(dtype).name} tensor's values belong in "
            f"{expected or 'tensor_content'}, not in {', '.join(given)}",
        )
    if dtype == types_pb2.DT_STRING:
        values = proto.string_val
        given_characters = sum(len(value) for value in values)
        characters = given_characters
        if elements > len(values) and len(values):
            characters += (elements - len(values)) * len(values[-1])
        stored = given_characters + len(values) * STRING_ELEMENT_OVERHEAD + content
        decoded = elements * STRING_ELEMENT_OVERHEAD + characters + content
        return TensorSize(shape, elements, decoded, stored)
    decoded = elements * itemsize
    if content:
        if content != decoded:
            raise _parse_error(
                name,
                f"tensor_content has {content} bytes; shape "
                f"{shape} of {tf.as_dtype(dtype).name} needs {decoded}",
            )
        return TensorSize(shape, elements, decoded, content)
    stored = len(getattr(proto, expected)) * _FIELD_ITEM_BYTES.get(expected, 8) if expected else 0
    return TensorSize(shape, elements, decoded, stored)


def to_array(proto, name="tensor", size=None):
    """A `TensorProto` (typed fields or `tensor_content`) as a NumPy array,
    with TensorFlow's semantics (fewer values than elements: the last one
    repeats; none: zeros) but checked first (`tensor_size`) and decoded
    without intermediate copies: memory is the decoded array, once.
    Integers outside the dtype's range (300 for uint8) are INVALID_ARGUMENT.
    """
    size = size or tensor_size(proto, name)
    dtype = proto.dtype
    shape, n = size.shape, size.elements
    if dtype == types_pb2.DT_STRING:
        if proto.tensor_content:  # TF's string encoding: TensorFlow decodes it
            return _make_ndarray(proto, name)
        out = np.empty(n, dtype=object)
        values = proto.string_val
        k = min(len(values), n)
        if k:
            out[:k] = list(values[:k]) if k < len(values) else list(values)
            out[k:] = values[k - 1]
        else:
            out[:] = b""
        return out.reshape(shape)
    np_dtype = tf.as_dtype(dtype).as_numpy_dtype
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).copy().reshape(shape)
    field = _FIELDS.get(dtype)
    if field is None:  # quantized and other rare dtypes: fixed size, checked
        return _make_ndarray(proto, name)
    values = getattr(proto, field)
    count = len(values)
    width = 2 if field in ("scomplex_val", "dcomplex_val") else 1
    k = min(count // width, n)
    out = np.empty(n, dtype=np_dtype)
    if k:
        if field == "int_val" and dtype in _INT_VAL_RANGES:
            low, high = _INT_VAL_RANGES[dtype]
            head = np.fromiter(values, dtype=np.int32, count=k)
            bad = (head < low) | (head > high)
            if bad.any():
                index = int(np.argmax(bad))
                raise _parse_error(
                    name,
                    f"int_val[{index}] = {int(head[index])} is out of "
                    f"range for {tf.as_dtype(dtype).name} [{low}, {high}]",
                )
            del bad
            out[:k] = head
            del head
        elif width == 2:
            part = np.float32 if field == "scomplex_val" else np.float64
            pairs = np.fromiter(values, dtype=part, count=2 * k)
            out.real[:k], out.imag[:k] = pairs[0::2], pairs[1::2]
            del pairs
        elif field == "half_val":
            out.view(np.uint16)[:k] = np.fromiter(values, dtype=np.uint16, count=k)
        else:
            out[:k] = np.fromiter(values, dtype=np_dtype, count=k)
        if k < n:
            out[k:] = out[k - 1]
    else:
        out[:] = 0
    return out.reshape(shape)


def _make_ndarray(proto, name):
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError, KeyError, OverflowError) as error:
        raise _parse_error(name, error) from None


def _as_bytes(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")


__all__ = [
    "STRING_ELEMENT_OVERHEAD",
    "TensorSize",
    "dtype_enum",
    "tensor_size",
    "to_array",
    "to_proto",
]
