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
            f"Cannot encode a tensor of dtype {tf.as_dtype(dtype).name} as a "
            "typed proto field.")
    flat = array.ravel()
    if field == "half_val":  # the 16-bit patterns, as TensorFlow stores them
        flat = flat.view(np.uint16).astype(np.int32)
    elif field in ("scomplex_val", "dcomplex_val"):
        flat = np.stack([flat.real, flat.imag], axis=-1).ravel()
    getattr(proto, field).extend(flat.tolist())
    return proto


def to_array(proto, name="tensor"):
    """A `TensorProto` (typed fields or `tensor_content`) as a NumPy array;
    INVALID_ARGUMENT "tensor parsing error" (TF Serving's words) if it does
    not hold a valid tensor."""
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError, KeyError) as error:
        raise invalid_argument(f"tensor parsing error: {name} ({error})") \
            from None


def _as_bytes(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")


__all__ = ["dtype_enum", "to_array", "to_proto"]
