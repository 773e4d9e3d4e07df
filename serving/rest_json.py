"""NumPy arrays <-> the JSON values of TF Serving's REST API (columnar
`inputs` / `outputs`), without TensorFlow: strings go as `{"b64": ...}`
objects, numbers as nested lists; JSON has no dtypes, so numbers come back
as float32 or int32 (int64 when too large) and strings as bytes.

>>> json_value(np.array([[1, 2]], np.uint8))
[[1, 2]]
>>> from_json(["a", {"b64": "Yg=="}]).tolist()
[b'a', b'b']
"""

import base64

import numpy as np


def json_value(array):
    if array.dtype.kind in "OS":
        flat = [{"b64": base64.b64encode(v).decode("ascii")} for v in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    return array.tolist()


def from_json(value):
    def leaf(item):
        if isinstance(item, dict) and "b64" in item:
            return base64.b64decode(item["b64"])
        if isinstance(item, str):
            return item.encode("utf-8")
        return item

    array = np.asarray(value)
    if array.dtype.kind in "OU":
        flat = [leaf(v) for v in np.asarray(value, dtype=object).ravel()]
        result = np.empty(len(flat), dtype=object)
        result[:] = flat
        return result.reshape(array.shape)
    if array.dtype == np.float64:
        return array.astype(np.float32)
    if array.dtype == np.int64:
        return (
            array.astype(np.int32)
            if array.size == 0 or (array.min() >= -(2**31) and array.max() < 2**31)
            else array
        )
    return array
