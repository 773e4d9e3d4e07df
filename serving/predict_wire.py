"""TF Serving's `PredictRequest` / `PredictResponse` in protobuf wire format,
without TensorFlow.

`tensorflow_serving.apis` imports TensorFlow (its protos import
`tensorflow.core`), which alone takes about 650 MB of memory: more than a
client that only sends frames and reads probabilities may use (the
timeline of an hour of video runs in a fixed few hundred MB). This module
encodes the few messages such a client needs by hand, from
`tensorflow_serving/apis/predict.proto`, `model.proto` and TensorFlow's
`tensor.proto`, `tensor_shape.proto`, `types.proto`:

- `encode_predict_request(model, inputs, signature, version, output_filter)`
  → bytes (numeric tensors packed into `tensor_content`, strings in
  `string_val`);
- `decode_predict_response(data)` → `({output name: array}, version)`,
  reading both `tensor_content` and the typed fields (`float_val`, ...),
  as TF Serving answers with either.

Unknown fields are skipped, as protobuf does. tests/test_timeline.py
checks both directions against the real protos.

>>> import numpy as np
>>> data = encode_predict_request("m", {"x": np.array([1.5], np.float32)})
>>> len(data) > 0
True
"""

import struct

import numpy as np

# tensorflow/core/framework/types.proto: DataType numbers.
_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    17: np.uint16,
    19: np.float16,
    22: np.uint32,
    23: np.uint64,
}
_ENUMS = {np.dtype(t): n for n, t in _DTYPES.items()}
DT_STRING = 7

# TensorProto fields: (number, struct format of one value or "varint").
_TYPED_FIELDS = {
    5: "<f",  # float_val
    6: "<d",  # double_val
    7: "varint",  # int_val (int32, int16, int8, uint8, uint16)
    10: "varint",  # int64_val
    11: "varint",  # bool_val
    13: "varint",  # half_val (the bits of each float16)
    16: "varint",  # uint32_val
    17: "varint",  # uint64_val
}


class WireError(ValueError):
    """Bytes that are not the protobuf message expected."""


# ----------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------
def _varint(value):
    value &= (1 << 64) - 1  # negative ints: two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number, wire_type):
    return _varint(number << 3 | wire_type)


def _bytes_field(number, data):
    return _key(number, 2) + _varint(len(data)) + data


def _varint_field(number, value):
    return _key(number, 0) + _varint(value)


def encode_tensor(array):
    """A `TensorProto` (bytes) of a NumPy array: numbers in `tensor_content`
    (little-endian), bytes/str in `string_val`."""
    array = np.asarray(array)
    shape = b"".join(_bytes_field(2, _varint_field(1, int(size))) for size in array.shape)
    if array.dtype.kind in "OSU":
        values = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.ravel()]
        body = b"".join(_bytes_field(8, v) for v in values)
        return _varint_field(1, DT_STRING) + _bytes_field(2, shape) + body
    if array.dtype not in _ENUMS:
        raise ValueError(f"Cannot send a tensor of dtype {array.dtype} (no TensorFlow DataType).")
    content = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
    return _varint_field(1, _ENUMS[array.dtype]) + _bytes_field(2, shape) + _bytes_field(4, content)


def encode_model_spec(model, version=None, signature=None):
    """A `ModelSpec` (bytes)."""
    spec = _bytes_field(1, model.encode("utf-8"))
    if version is not None:
        spec += _bytes_field(2, _varint_field(1, int(version)))  # Int64Value
    if signature:
        spec += _bytes_field(3, signature.encode("utf-8"))
    return spec


def encode_predict_request(model, inputs, signature=None, version=None, output_filter=()):
    """A `PredictRequest` (bytes): `inputs` a dict name → array."""
    parts = [_bytes_field(1, encode_model_spec(model, version, signature))]
    for name, value in inputs.items():
        entry = _bytes_field(1, name.encode("utf-8")) + _bytes_field(2, encode_tensor(value))
        parts.append(_bytes_field(2, entry))
    parts.extend(_bytes_field(3, name.encode("utf-8")) for name in output_filter)
    return b"".join(parts)


# ----------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------
def _read_varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated or malformed varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data):
    """`(number, wire type, value)` of each field: an int for varints, bytes
    otherwise."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
        elif wire_type == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire_type == 2:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire_type == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wire_type} (field {number})")
        if pos > end:
            raise WireError(f"truncated field {number}")
        yield number, wire_type, value


def _signed(value, bits=64):
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _typed_values(number, wire_type, value):
    fmt = _TYPED_FIELDS[number]
    if fmt == "varint":
        if wire_type == 0:
            return [value]
        out, pos = [], 0
        while pos < len(value):
            item, pos = _read_varint(value, pos)
            out.append(item)
        return out
    if wire_type == 2:
        return list(struct.unpack(f"<{len(value) // struct.calcsize(fmt)}{fmt[1]}", value))
    return list(struct.unpack(fmt, value))


def decode_tensor(data):
    """A `TensorProto` (bytes) → NumPy array (strings as an object array of
    bytes)."""
    dtype, shape, content, strings, typed = 0, [], None, [], []
    for number, wire_type, value in _fields(data):
        if number == 1:
            dtype = value
        elif number == 2:
            for dim_number, _, dim in _fields(value):
                if dim_number == 2:
                    size = next((_signed(v) for n, _, v in _fields(dim) if n == 1), 0)
                    shape.append(size)
        elif number == 4:
            content = value
        elif number == 8:
            strings.append(bytes(value))
        elif number in _TYPED_FIELDS:
            typed.extend(_typed_values(number, wire_type, value))
    count = int(np.prod(shape)) if shape else 1
    if dtype == DT_STRING:
        array = np.empty(len(strings), dtype=object)
        array[:] = strings
        if len(strings) == 1 and count != 1:
            array = np.repeat(array, count)
        return array.reshape(shape)
    if dtype not in _DTYPES:
        raise WireError(f"unsupported tensor dtype number {dtype}")
    kind = np.dtype(_DTYPES[dtype])
    if content is not None:
        return np.frombuffer(content, kind.newbyteorder("<")).astype(kind).reshape(shape)
    if kind == np.float16:
        array = np.array(typed, np.uint16).view(np.float16)
    elif kind.kind == "i":
        array = np.array([_signed(v, 64) for v in typed], np.int64).astype(kind)
    else:
        array = np.array(typed).astype(kind)
    if array.size == 1 and count != 1:  # one value stands for all
        array = np.repeat(array, count)
    return array.reshape(shape)


def decode_predict_response(data):
    """A `PredictResponse` (bytes) → `({output name: array}, model version or
    None)`."""
    outputs, version = {}, None
    for number, _, value in _fields(data):
        if number == 1:
            name, tensor = None, b""
            for entry_number, _, entry in _fields(value):
                if entry_number == 1:
                    name = bytes(entry).decode("utf-8")
                elif entry_number == 2:
                    tensor = entry
            outputs[name] = decode_tensor(tensor)
        elif number == 2:
            for spec_number, _, spec in _fields(value):
                if spec_number == 2:
                    version = next((_signed(v) for n, _, v in _fields(spec) if n == 1), 0)
    return outputs, version


__all__ = [
    "WireError",
    "decode_predict_response",
    "decode_tensor",
    "encode_model_spec",
    "encode_predict_request",
    "encode_tensor",
]
