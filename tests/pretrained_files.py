"""Checkpoints in the published formats, written by the tests (no PyTorch).

- `write_pth(path, obj, layout)`: what `torch.save` writes, byte layout
  included: protocol-2 pickles whose tensors are
  `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
  requires_grad, OrderedDict())` (or `_rebuild_tensor`, PyTorch < 0.4) and
  whose storages are persistent ids `('storage', torch.FloatStorage, key,
  location, numel[, view])`; `layout="zip"` (PyTorch >= 1.6:
  `<stem>/data.pkl`, `<stem>/data/<key>`, `byteorder`, `version`) or
  `"legacy"` (magic number, protocol 1001, sys info, the pickle, the sorted
  storage keys, then each storage as an int64 element count and its bytes).
  `tests/test_pretrained.py` checks, when PyTorch is installed, that
  `torch.load(weights_only=True)` reads these files back exactly.
- `hara_state_dict(...)`: a 3D-ResNets state dict with random weights, in
  the names and shapes of `kenshohara/3D-ResNets-PyTorch`'s models
  (`models/resnet.py`, `resnext.py`, `wide_resnet.py` of both the CVPR2018
  branch and master), written from those facts.
"""

import collections
import io
import os
import pickle
import re
import struct
import zipfile

import numpy as np


class _Global:
    """A module-level name to pickle as a GLOBAL without importing it."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce wants a callable
        raise TypeError(f"{self.module}.{self.name} is only a name here")


class _Storage:
    def __init__(self, key, array, location):
        self.key, self.array, self.location = key, array, location


_STORAGE_TYPES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler: overridable dispatch
    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, legacy, rebuild, location):
        super().__init__(file, protocol=2)
        self.legacy, self.rebuild, self.location = legacy, rebuild, location
        self.storages = []

    def _save_global_name(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[_Global] = _save_global_name

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            storage_type = _Global(
                "torch.cuda" if obj.location.startswith("cuda") else "torch",
                _STORAGE_TYPES[obj.array.dtype],
            )
            pid = ("storage", storage_type, obj.key, obj.location, int(obj.array.size))
            return pid + (None,) if self.legacy else pid
        return None

    def reducer_override(self, obj):
        if not isinstance(obj, np.ndarray):
            return NotImplemented
        key = str(len(self.storages)) if not self.legacy else str(140000000 + len(self.storages))
        array = obj if obj.flags.c_contiguous else obj.copy(order="C")
        storage = _Storage(key, array.reshape(-1), self.location)
        self.storages.append(storage)
        strides = tuple(s // array.itemsize for s in array.strides)
        if self.rebuild == "_rebuild_tensor":
            return _Global("torch._utils", "_rebuild_tensor"), (
                storage,
                0,
                tuple(obj.shape),
                strides,
            )
        return _Global("torch._utils", "_rebuild_tensor_v2"), (
            storage,
            0,
            tuple(obj.shape),
            strides,
            False,
            collections.OrderedDict(),
        )


def write_pth(path, obj, layout="zip", rebuild="_rebuild_tensor_v2", location="cpu"):
    """Writes `obj` (dicts, lists, plain values, NumPy arrays as tensors)
    as `torch.save` does.

    Args:
        layout: `"zip"` (PyTorch >= 1.6) or `"legacy"` (before).
        rebuild: `"_rebuild_tensor_v2"` (PyTorch >= 0.4) or
            `"_rebuild_tensor"` (0.3).
        location: the storages' device tag, e.g. `"cuda:0"` for files saved
            from the GPU (their type is then `torch.cuda.FloatStorage`).
    """
    buffer = io.BytesIO()
    pickler = _TorchPickler(buffer, layout == "legacy", rebuild, location)
    pickler.dump(obj)
    if layout == "zip":
        stem = os.path.splitext(os.path.basename(path))[0]
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(f"{stem}/data.pkl", buffer.getvalue())
            archive.writestr(f"{stem}/byteorder", "little")
            for storage in pickler.storages:
                archive.writestr(
                    f"{stem}/data/{storage.key}",
                    storage.array.astype(storage.array.dtype.newbyteorder("<")).tobytes(),
                )
            archive.writestr(f"{stem}/version", "3\n")
        return
    if layout != "legacy":
        raise ValueError(f"layout must be 'zip' or 'legacy', not {layout!r}")
    with open(path, "wb") as file:
        for header in (
            0x1950A86A20F9469CFC6C,
            1001,
            {
                "protocol_version": 1001,
                "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4},
            },
        ):
            pickle.dump(header, file, protocol=2)
        file.write(buffer.getvalue())
        keys = sorted(storage.key for storage in pickler.storages)
        pickle.dump(keys, file, protocol=2)
        by_key = {storage.key: storage for storage in pickler.storages}
        for key in keys:
            array = by_key[key].array
            file.write(struct.pack("<q", array.size))
            file.write(array.astype(array.dtype.newbyteorder("<")).tobytes())


# ---------------------------------------------------------------------------
# 3D-ResNets state dicts, from the architecture facts
# ---------------------------------------------------------------------------
BLOCKS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}


def hara_spec(
    family, depth, planes, stem_filters=64, stem_t=7, shortcut="B", cardinality=32, num_classes=400
):
    """The facts that fix a 3D-ResNets state dict's names and shapes."""
    if family == "resnet":
        block, expansion = ("basic", 1) if depth in (18, 34) else ("bottleneck", 4)
    else:
        block, expansion = "bottleneck", 2
    return dict(
        family=family,
        depth=depth,
        block=block,
        expansion=expansion,
        blocks=BLOCKS[depth],
        planes=tuple(planes),
        stem_filters=stem_filters,
        stem_t=stem_t,
        shortcut=shortcut,
        cardinality=cardinality,
        num_classes=num_classes,
    )


def hara_shapes(spec):
    """`{name: shape}` of the state dict of `spec`, in module order."""
    shapes = collections.OrderedDict()

    def conv(name, cout, cin, k, groups=1):
        kt, kh, kw = k
        shapes[f"{name}.weight"] = (cout, cin // groups, kt, kh, kw)

    def bn(name, channels):
        for key in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{key}"] = (channels,)
        shapes[f"{name}.num_batches_tracked"] = ()

    conv("conv1", spec["stem_filters"], 3, (spec["stem_t"], 7, 7))
    bn("bn1", spec["stem_filters"])
    in_planes = spec["stem_filters"]
    for stage, (count, planes) in enumerate(zip(spec["blocks"], spec["planes"]), start=1):
        out = planes * spec["expansion"]
        for index in range(count):
            name = f"layer{stage}.{index}"
            stride = 2 if stage > 1 and index == 0 else 1
            if spec["block"] == "basic":
                conv(f"{name}.conv1", planes, in_planes, (3, 3, 3))
                bn(f"{name}.bn1", planes)
                conv(f"{name}.conv2", planes, planes, (3, 3, 3))
                bn(f"{name}.bn2", planes)
            else:
                groups = spec["cardinality"] if spec["family"] == "resnext" else 1
                mid = groups * (planes // 32) if spec["family"] == "resnext" else planes
                conv(f"{name}.conv1", mid, in_planes, (1, 1, 1))
                bn(f"{name}.bn1", mid)
                conv(f"{name}.conv2", mid, mid, (3, 3, 3), groups)
                bn(f"{name}.bn2", mid)
                conv(f"{name}.conv3", out, mid, (1, 1, 1))
                bn(f"{name}.bn3", out)
            if index == 0 and (stride != 1 or in_planes != out) and spec["shortcut"] == "B":
                conv(f"{name}.downsample.0", out, in_planes, (1, 1, 1))
                bn(f"{name}.downsample.1", out)
            in_planes = out
    shapes["fc.weight"] = (spec["num_classes"], in_planes)
    shapes["fc.bias"] = (spec["num_classes"],)
    return shapes


def random_state_dict(shapes, seed=0, num_batches_tracked=True):
    """Random weights of the given shapes: He-scaled convolutions, batch-norm
    statistics near 1 and small scales on each block's last batch norm, so
    activations stay of order 1 through 200 layers."""
    rng = np.random.default_rng(seed)
    state = collections.OrderedDict()
    for name, shape in shapes.items():
        match = re.fullmatch(r"(layer\d\.\d+)\.bn(\d)\.weight", name)
        if match and f"{match.group(1)}.conv{int(match.group(2)) + 1}.weight" not in shapes:
            state[name] = rng.uniform(0.05, 0.2, shape).astype(np.float32)
            continue
        if name.endswith("num_batches_tracked"):
            if num_batches_tracked:
                state[name] = np.array(rng.integers(1, 1000), np.int64)
            continue
        if name.endswith(("running_var",)):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("running_mean") or name.endswith(".bias"):
            value = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1:  # batch-norm gamma
            value = rng.uniform(0.5, 1.0, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        state[name] = value.astype(np.float32)
    return state
