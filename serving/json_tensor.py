"""JSON <-> tensors for TF Serving's REST Predict API: TF Serving's
`util/json_tensor.cc` (FillPredictRequestFromJson, MakeJsonFromTensors),
with its checks, messages and number formats.

A request's `instances` (row format) or `inputs` (columnar) become the
`PredictRequest`'s input tensors, typed by the signature's `TensorInfo`s;
each tensor the JSON declares is checked against the per-request memory
limit before it is built. Outputs are written back as `{"predictions":
...}` or `{"outputs": ...}`; binary strings as `{"b64": "..."}`. The
parsing helpers are shared with the `tf.Example` side
(`serving.json_examples`). Pure: no server, no model.

>>> json_to_array([[1, 2], [3, 4]], types_pb2.DT_FLOAT).shape
(2, 2)
"""

import base64
import binascii
import json

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving.errors import ServingError, invalid_argument
from serving.json_parser import loads
from serving.limits import check_request_bytes
from serving.tensors import to_array, to_proto

_INT32 = (-(2**31), 2**31 - 1)
_RANGES = {
    types_pb2.DT_INT32: _INT32,
    types_pb2.DT_INT16: _INT32,
    types_pb2.DT_INT8: _INT32,
    types_pb2.DT_UINT8: _INT32,
    types_pb2.DT_INT64: (-(2**63), 2**63 - 1),
    types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_UINT64: (0, 2**64 - 1),
}
_DEBUG_BYTES = 256  # kMaxJsonDebugStringBytes


def debug(value):
    text = json.dumps(value, allow_nan=True, separators=(",", ":"))
    return text[:_DEBUG_BYTES]


def json_type(value):
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def format_error(value, *words):
    return invalid_argument(f"JSON Value: {debug(value)} " + "".join(words))


def parse_json(body):
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        document = loads(body)
    except UnicodeDecodeError as error:
        raise invalid_argument(
            f"JSON Parse error: Invalid encoding in string. at offset: {error.start}"
        ) from None
    except json.JSONDecodeError as error:
        raise invalid_argument(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    if not isinstance(document, dict):
        raise format_error(document, "Is not object")
    return document


def fill_signature(document, request):
    if "signature_name" in document:
        value = document["signature_name"]
        if not isinstance(value, str):
            raise invalid_argument(
                f"JSON Value: {debug(document)} not formatted correctly. "
                "'signature_name' key must be a string value."
            )
        request.model_spec.signature_name = value


def is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def b64_decode(value):
    if not is_b64(value):
        raise invalid_argument(
            f"JSON Value: {debug(value)} not formatted correctly for base64 data"
        )
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _dense_shape(value):
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _type_error(value, dtype):
    return invalid_argument(
        f"JSON Value: {debug(value)} Type: {json_type(value)} is not of "
        f"expected type: {tf.as_dtype(dtype).name}"
    )


def _scalar(value, dtype):
    """AddValueToTensor: one JSON leaf as a value of `dtype`."""
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(value, dtype)
        return value
    if dtype in _RANGES:
        low, high = _RANGES[dtype]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, dict):
            return b64_decode(value)
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"Conversion of JSON Value: {debug(value)} to type: {tf.as_dtype(dtype).name}",
    )


def _fill(value, level, shape, dtype, out):
    """FillTensorProto: checks a nested list is dense with `shape`."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {debug(value)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}"
            )
        if isinstance(value, dict) and dtype != types_pb2.DT_STRING:
            raise _type_error(value, dtype)
        out.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: "
            f"{level} expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


_NUMPY = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
    types_pb2.DT_BOOL: np.bool_,
}


def _fast_array(value, dtype, shape):
    """NumPy's conversion of a dense nested list whose leaves all have the
    right JSON type for `dtype`; None when that cannot be shown quickly (the
    exact checker then finds the error)."""
    target = _NUMPY.get(dtype)
    if target is None:
        return None
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):
        return None
    if list(array.shape) != shape:
        return None
    kind = array.dtype.kind
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        ok = kind in "iuf"
    elif dtype == types_pb2.DT_BOOL:
        ok = kind == "b"
    else:
        low, high = _RANGES[dtype]
        ok = kind in "iu" and (
            array.size == 0 or (int(array.min()) >= low and int(array.max()) <= high)
        )
    if not ok:
        return None
    # Values wrap as TensorFlow's int_val -> uint8/int8/int16 casts do.
    return array.astype(target, copy=False)


def _check_json_tensor(shape, dtype, limit):
    """The tensor a JSON value's (first-path) shape declares, against the
    per-request `limit` (RESOURCE_EXHAUSTED), before it is built."""
    if not limit:
        return
    elements = int(np.prod(shape, dtype=np.float64)) if shape else 1
    itemsize = tf.as_dtype(dtype).size if dtype in _NUMPY else 8
    check_request_bytes(elements * itemsize, limit, "request tensor")


def json_to_array(value, dtype, limit=None):
    """A JSON value (nested lists of leaves) as the array of a tensor of
    `dtype`, with TF Serving's checks and messages; the tensor its shape
    declares is checked against `limit` bytes before it is built."""
    shape = _dense_shape(value)
    _check_json_tensor(shape, dtype, limit)
    array = _fast_array(value, dtype, shape)
    if array is not None:
        return array
    flat = []
    _fill(value, 0, shape, dtype, flat)
    if dtype == types_pb2.DT_STRING:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    target = _NUMPY[dtype]
    if target in (np.uint8, np.int8, np.int16):
        return np.asarray(flat, np.int64).astype(target).reshape(shape)
    return np.asarray(flat, target).reshape(shape)


def _set_input(request, name, array, dtype):
    proto = to_proto(array, as_content=True)
    proto.dtype = dtype
    request.inputs[name].CopyFrom(proto)


def predict_inputs_from_json(document, infos, request, limit=None):
    """FillPredictRequestFromJson: fills `request.inputs` from `instances`
    (row format) or `inputs` (columnar); returns True for columnar. Each
    tensor is checked against `limit` bytes before it is built."""
    if not infos:
        name = request.model_spec.signature_name
        raise invalid_argument("Failed to get input map for signature: " + (name or "DEFAULT"))
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise format_error(
            document,
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        )
    if has_instances:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise format_error(document, "Expecting 'instances' to be an list/array")
        if not instances:
            raise format_error(document, "No values in 'instances' array")
        _instances(instances, infos, request, limit)
        return False
    if has_inputs:
        _columns(document["inputs"], infos, request, limit)
        return True
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _is_element_object(value):
    return isinstance(value, dict) and not is_b64(value)


def _instances(instances, infos, request, limit=None):
    """FillTensorMapFromInstancesList."""
    if not isinstance(instances[0], dict) and len(infos) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as "
            "multiple input tensors required as per tensorinfo_map"
        )
    names = sorted(infos)
    if not _is_element_object(instances[0]):
        name = names[0]
        dtype = infos[name].dtype
        shape = _dense_shape(instances)
        _check_json_tensor(shape, dtype, limit)
        array = _fast_array(instances, dtype, shape)
        if array is None:  # element by element: TF Serving's checks
            array = _plain_instances(instances, dtype)
        _set_input(request, name, array, dtype)
        return
    rows = {name: [] for name in names}
    shapes = {}
    for index, element in enumerate(instances):
        if not _is_element_object(element):
            raise invalid_argument(f"Expecting object but got list at item {index} of input list")
        for key, value in element.items():
            if key not in infos:
                raise invalid_argument(
                    f"Failed to process element: {index} key: {key} of "
                    "'instances' list. Error: INVALID_ARGUMENT: JSON object: "
                    f"does not have named input: {key}"
                )
            try:
                array = json_to_array(value, infos[key].dtype, limit)
            except ServingError as error:
                if error.code != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                raise invalid_argument(
                    f"Failed to process element: {index} key: {key} of "
                    f"'instances' list. Error: {error.code.name}: "
                    f"{error.message}"
                ) from None
            _check_same_shape(shapes, key, array, index)
            rows[key].append(array)
        if set(element) != set(names):
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. "
                f"JSON object: {debug(element)} keys must be equal to: "
                f"{','.join(names)}"
            )
    for name in names:
        _set_input(request, name, np.stack(rows[name]), infos[name].dtype)


def _check_same_shape(shapes, key, array, index):
    if key not in shapes:
        shapes[key] = array.shape
        return
    if array.size != int(np.prod(shapes[key])):
        message = f"Expecting tensor size: {int(np.prod(shapes[key]))} but got: {array.size}"
    elif array.shape != shapes[key]:
        message = f"Expecting shape {_shape(shapes[key])} but got: {_shape(array.shape)}"
    else:
        return
    raise invalid_argument(
        f"Failed to process element: {index} key: {key} of "
        f"'instances' list. Error: INVALID_ARGUMENT: "
        f"{message}"
    )


def _plain_instances(instances, dtype):
    """Plain-list instances converted one element at a time (the exact
    checks and messages of TF Serving)."""
    rows, first = [], None
    for index, element in enumerate(instances):
        if _is_element_object(element):
            raise invalid_argument(
                f"Expecting value/list but got object at item {index} of input list"
            )
        try:
            array = json_to_array(element, dtype)
        except ServingError as error:
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. "
                f"Error: {error.code.name}: {error.message}"
            ) from None
        if first is not None and array.shape != first:
            size = int(np.prod(first))
            message = (
                f"Expecting tensor size: {size} but got: {array.size}"
                if array.size != size
                else f"Expecting shape {_shape(first)} but got: {_shape(array.shape)}"
            )
            raise invalid_argument(
                f"Failed to process element: {index} of "
                f"'instances' list. Error: "
                f"INVALID_ARGUMENT: {message}"
            )
        first = array.shape
        rows.append(array)
    return np.stack(rows)


def _shape(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def _columns(value, infos, request, limit=None):
    """FillTensorMapFromInputsMap."""
    if not isinstance(value, dict) or is_b64(value):
        if len(infos) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as "
                "multiple input tensors required as per tensorinfo_map"
            )
        name = next(iter(infos))
        _set_input(request, name, json_to_array(value, infos[name].dtype, limit), infos[name].dtype)
        return
    for name in sorted(infos):
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        _set_input(
            request, name, json_to_array(value[name], infos[name].dtype, limit), infos[name].dtype
        )


def dumps(document):
    return json.dumps(document, allow_nan=True, separators=(",", ":")).encode()


def _json_values(name, proto):
    """A tensor's values as JSON-ready nested lists (AddTensorValues):
    float32 as its shortest decimal form (as TF Serving prints it)."""
    dtype = proto.dtype
    array = to_array(proto, name)
    if dtype == types_pb2.DT_FLOAT:
        return array.astype(str).astype(np.float64).tolist()
    if dtype in (
        types_pb2.DT_DOUBLE,
        types_pb2.DT_INT32,
        types_pb2.DT_INT16,
        types_pb2.DT_INT8,
        types_pb2.DT_UINT8,
        types_pb2.DT_INT64,
        types_pb2.DT_BOOL,
        types_pb2.DT_UINT32,
        types_pb2.DT_UINT64,
    ):
        return array.tolist()
    if dtype == types_pb2.DT_STRING:
        if name.endswith("_bytes"):
            convert = lambda v: {"b64": base64.b64encode(v).decode("ascii")}  # noqa: E731
        else:
            convert = lambda v: v.decode("utf-8", "replace")  # noqa: E731
        flat = [convert(v) for v in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    raise invalid_argument("Failed to write JSON value for tensor type: " + tf.as_dtype(dtype).name)


def predict_json(outputs, columnar):
    """MakeJsonFromTensors: `{"predictions": ...}` (row) or
    `{"outputs": ...}` (columnar)."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if columnar:
        if len(names) == 1:
            return dumps({"outputs": _json_values(names[0], outputs[names[0]])})
        return dumps({"outputs": {n: _json_values(n, outputs[n]) for n in names}})
    batch = None
    for name in names:
        dims = outputs[name].tensor_shape.dim
        if not dims:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch is not None and dims[0].size != batch:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch "
                f"size: {dims[0].size} expecting: {batch}"
            )
        batch = dims[0].size
    values = {name: _json_values(name, outputs[name]) for name in names}
    if len(names) == 1:
        return dumps({"predictions": values[names[0]]})
    return dumps({"predictions": [{n: values[n][i] for n in names} for i in range(batch)]})


__all__ = [
    "b64_decode",
    "dumps",
    "fill_signature",
    "format_error",
    "is_b64",
    "json_to_array",
    "json_type",
    "parse_json",
    "predict_inputs_from_json",
    "predict_json",
]
