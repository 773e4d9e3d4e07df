"""Reads PyTorch `.pth` files into NumPy arrays, without PyTorch, safely.

`torch.save` writes a pickle whose tensors point at raw storages: since
PyTorch 1.6 a zip archive (`<dir>/data.pkl`, `<dir>/data/<key>`, ...),
before that one stream (a magic number, a protocol version, system info, the
pickle, the list of storage keys, then each storage as an 8-byte element
count and its raw little-endian bytes). Both are read here.

Unpickling runs code: a pickle may name any importable callable. So the
unpickler here resolves only the few globals a saved state dict needs and
refuses every other one, naming it:

- `collections.OrderedDict` (state dicts, empty backward-hook dicts),
  `collections.Counter` (a `MultiStepLR` scheduler's milestones);
- `torch._utils._rebuild_tensor` (PyTorch < 0.4), `_rebuild_tensor_v2` and
  `_rebuild_parameter`, replaced by functions of this module that record
  `(storage, offset, size, stride)` and nothing else;
- the storage types `torch.FloatStorage`, `torch.cuda.FloatStorage`, ...
  (only their element type is used; GPU storages load on the CPU).

Everything else in the file (optimizer state, numbers, strings) comes back
as plain Python values. PyTorch is never imported.
"""

import collections
import errno
import io
import os
import pickle
import struct
import tarfile
import zipfile
import zlib

import numpy as np

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

# torch storage type name -> NumPy dtype of its little-endian bytes
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",  # converted to float32 below
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
_STORAGE_MODULES = ("torch", "torch.cuda")


class PthFormatError(ValueError):
    """A `.pth` file that is not a readable PyTorch state-dict file."""


class _Frozen:
    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is read-only")


class _StorageType(_Frozen):
    __slots__ = ("name",)

    def __init__(self, name):
        object.__setattr__(self, "name", name)


class _StorageRef(_Frozen):
    """A storage named by the pickle: key, element type, element count and,
    in the legacy format, an optional view `(offset, size)`."""

    __slots__ = ("key", "dtype", "numel", "view")

    def __init__(self, key, dtype, numel, view=None):
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "numel", numel)
        object.__setattr__(self, "view", view)


class _TensorRef(_Frozen):
    """A tensor as the pickle describes it; made an array once the storages
    are read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise PthFormatError(
                f"A tensor in the file is rebuilt from {type(storage).__name__}, "
                "not from a storage."
            )
        if not (
            _is_int(offset)
            and offset >= 0
            and isinstance(size, (tuple, list))
            and all(_is_int(n) and n >= 0 for n in size)
            and isinstance(stride, (tuple, list))
            and len(stride) == len(size)
            and all(_is_int(s) and s >= 0 for s in stride)
        ):
            raise PthFormatError(
                "A tensor in the file has an invalid layout: "
                f"offset={offset!r}, size={size!r}, stride={stride!r}."
            )
        object.__setattr__(self, "storage", storage)
        object.__setattr__(self, "offset", int(offset))
        object.__setattr__(self, "size", tuple(int(n) for n in size))
        object.__setattr__(self, "stride", tuple(int(s) for s in stride))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
):
    del requires_grad, backward_hooks  # not part of the values
    if metadata:
        raise PthFormatError(
            f"A tensor in the file carries metadata {metadata!r} (conjugate or "
            "negative bits); only plain tensors are read."
        )
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    del requires_grad, backward_hooks
    return data


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path, legacy):
        super().__init__(file)
        self._path = path
        self._legacy = legacy

    def find_class(self, module, name):
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        if module in _STORAGE_MODULES and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise PthFormatError(
            f"{self._path}: refusing to load `{module}.{name}`: only state dicts "
            "(tensors in dicts, lists and plain values) are read, and this "
            "name is not one a state dict needs. Unpickling it could run "
            "arbitrary code. If you trust the file, re-save just its weights "
            "with PyTorch: torch.save({'state_dict': "
            "torch.load(path, weights_only=False)['state_dict']}, 'weights.pth')."
        )

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise PthFormatError(f"{self._path}: unexpected persistent id {pid!r}.")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":
            raise PthFormatError(
                f"{self._path}: the file holds a pickled nn.Module (the whole "
                "model, saved with torch.save(model)); only state dicts are "
                "read. Re-save it with torch.save({'state_dict': "
                "model.state_dict()}, 'weights.pth')."
            )
        expected = 6 if self._legacy else 5
        if kind != "storage" or len(pid) != expected:
            raise PthFormatError(f"{self._path}: unexpected persistent id {pid!r}.")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise PthFormatError(f"{self._path}: a storage of unsupported type {storage_type!r}.")
        if not _is_int(numel) or numel < 0:
            raise PthFormatError(f"{self._path}: a storage of invalid size {numel!r}.")
        view = None
        if self._legacy and pid[5] is not None:
            view_key, offset, view_size = pid[5]
            view = (str(view_key), int(offset), int(view_size))
        return _StorageRef(str(key), storage_type.name, int(numel), view)


def read_pth(path):
    """Reads a `torch.save` file (zip or legacy format) without PyTorch.

    Args:
        path: the `.pth` / `.pt` file.

    Returns:
        the saved object with every tensor as a NumPy array (bfloat16 as
        float32), dicts, lists and plain values as they were.

    Raises:
        FileNotFoundError: no such file.
        PthFormatError: not a PyTorch file, a format this reader does not
            handle (the tar format of PyTorch < 0.1.10, TorchScript
            archives), or a file naming a global a state dict does not need.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path}")
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    with open(path, "rb") as file:
        head = file.read(512)
    if len(head) >= 262 and head[257:262] == b"ustar" and tarfile.is_tarfile(path):
        raise PthFormatError(
            f"{path}: a tar-format torch file (PyTorch < 0.1.10); not supported. "
            "Load it with an old PyTorch and re-save it with torch.save."
        )
    return _read_legacy(path)


# What `zipfile` raises for a damaged archive: a bad header, CRC or name
# (BadZipFile), a damaged compressed stream (zlib.error), a cut record
# (EOFError), an unknown compression method or encryption
# (NotImplementedError, RuntimeError).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


def _read_zip(path):
    try:
        return _read_zip_archive(path)
    except _ZIP_ERRORS as error:
        damage = error
    except OSError as error:
        if error.errno != errno.EINVAL:  # an I/O error, not the file's content
            raise
        damage = error  # an offset in the archive points before its start
    raise PthFormatError(
        f"{path}: a damaged zip archive ({type(damage).__name__}: {damage}); "
        "download or copy the file again."
    )


def _read_zip_archive(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise PthFormatError(
                f"{path}: a zip file but not a torch.save archive (expected one "
                f"'<dir>/data.pkl', found {len(pickles)})."
            )
        prefix = pickles[0][: -len("data.pkl")]
        if any(name.startswith(prefix + "code/") for name in names):
            raise PthFormatError(
                f"{path}: a TorchScript archive (torch.jit.save); only "
                "torch.save files of state dicts are read."
            )
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        obj = _unpickle(io.BytesIO(archive.read(pickles[0])), path, False, pickles[0])

        def storage_bytes(ref):
            record = f"{prefix}data/{ref.key}"
            if record not in names:
                raise PthFormatError(f"{path}: storage record {record} is missing.")
            return archive.read(record)

        return _materialize(obj, path, storage_bytes, byteorder)


def _unpickle(file, path, legacy, what):
    """One pickle from `file` through the restricted unpickler; a cut or
    damaged pickle (which fails in many ways: EOFError, UnpicklingError,
    a stack or memo error, a bad argument to a rebuild function) is a
    `PthFormatError` naming `what`."""
    try:
        return _RestrictedUnpickler(file, path, legacy=legacy).load()
    except PthFormatError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged pickle fails in many ways
        raise PthFormatError(
            f"{path}: {what} is truncated or damaged ({type(error).__name__}: "
            f"{str(error) or 'no details'}); download or copy the file again."
        ) from None


def _read_legacy(path):
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        try:
            magic = _RestrictedUnpickler(file, path, legacy=True).load()
        except PthFormatError:
            raise
        except Exception as error:  # noqa: BLE001 - any unpickling failure
            raise PthFormatError(
                f"{path}: not a PyTorch file (neither a zip archive nor the "
                f"legacy torch.save format): {error}"
            ) from None
        if magic != _MAGIC_NUMBER:
            raise PthFormatError(f"{path}: not a PyTorch file (no torch.save magic number).")
        protocol = _unpickle(file, path, True, "the protocol version")
        if protocol != _PROTOCOL_VERSION:
            raise PthFormatError(
                f"{path}: legacy torch.save protocol {protocol!r}; expected {_PROTOCOL_VERSION}."
            )
        sys_info = _unpickle(file, path, True, "the system information")
        little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
        obj = _unpickle(file, path, True, "the saved object's pickle")
        keys = _unpickle(file, path, True, "the storage key list")
        if not isinstance(keys, list):
            raise PthFormatError(f"{path}: the storage key list is missing.")
        refs = {}
        _collect_storages(obj, refs)
        raw = {}
        for key in keys:
            key = str(key)
            header = file.read(8)
            if len(header) != 8:
                raise PthFormatError(f"{path}: truncated before storage {key}.")
            (numel,) = struct.unpack("<q", header)
            ref = refs.get(key)
            if ref is None:
                raise PthFormatError(f"{path}: storage {key} is not used by any tensor.")
            nbytes = numel * np.dtype(_STORAGE_DTYPES[ref.dtype]).itemsize
            if not 0 <= nbytes <= size - file.tell():
                raise PthFormatError(
                    f"{path}: storage {key} is truncated (its header says {numel} "
                    f"elements, {size - file.tell()} bytes are left)."
                )
            raw[key] = file.read(nbytes)
    if not little:
        raise PthFormatError(f"{path}: saved on a big-endian machine; not supported.")
    return _materialize(obj, path, lambda ref: raw[ref.key], "little")


def _collect_storages(obj, refs):
    for item in _walk(obj):
        if isinstance(item, _TensorRef):
            refs.setdefault(item.storage.key, item.storage)


def _walk(obj):
    stack = [obj]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _materialize(obj, path, storage_bytes, byteorder):
    if byteorder not in ("little", "big"):
        raise PthFormatError(f"{path}: unknown byte order {byteorder!r}.")
    storages = {}

    def storage_array(ref):
        if ref.key not in storages:
            dtype = np.dtype(_STORAGE_DTYPES[ref.dtype])
            if byteorder == "big":
                dtype = dtype.newbyteorder(">")
            data = storage_bytes(ref)
            if len(data) < ref.numel * dtype.itemsize:
                raise PthFormatError(
                    f"{path}: storage {ref.key} holds {len(data)} bytes, fewer "
                    f"than its {ref.numel} elements of {dtype.itemsize} bytes."
                )
            array = np.frombuffer(data, dtype=dtype, count=ref.numel)
            if ref.dtype == "BFloat16Storage":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            storages[ref.key] = array.astype(array.dtype.newbyteorder("="))
        array = storages[ref.key]
        if ref.view is not None:
            _, offset, size = ref.view
            array = array[offset : offset + size]
        return array

    def tensor(ref):
        flat = storage_array(ref.storage)
        if 0 in ref.size:
            return np.zeros(ref.size, flat.dtype)
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
        if last >= flat.size:
            raise PthFormatError(
                f"{path}: a tensor of size {ref.size} reads past the end of its "
                f"storage ({flat.size} elements)."
            )
        return np.lib.stride_tricks.as_strided(
            flat[ref.offset :],
            shape=ref.size,
            strides=tuple(s * flat.itemsize for s in ref.stride),
        ).copy()

    def convert(item):
        if isinstance(item, _TensorRef):
            return tensor(item)
        if isinstance(item, (_StorageRef, _StorageType)):
            raise PthFormatError(
                f"{path}: a bare storage outside any tensor; only tensors are read."
            )
        if isinstance(item, dict):
            converted = type(item)() if type(item) in (dict, collections.OrderedDict) else {}
            for key, value in item.items():
                converted[key] = convert(value)
            return converted
        if isinstance(item, list):
            return [convert(value) for value in item]
        if isinstance(item, tuple):
            return tuple(convert(value) for value in item)
        return item

    return convert(obj)
