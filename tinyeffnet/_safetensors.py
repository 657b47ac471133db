"""safetensors files as raw bytes, without numpy or torch: the one reader and writer.

Checkpoints (tinyeffnet.training.checkpoint) and published weights (tinyeffnet.weights)
both go through here. A tensor is a `Record(dtype, shape, raw)`: the header's dtype code
("F32", "I64", ...), its shape and its little-endian, row-major bytes, so whatever is read
can be written back byte for byte.

Pinned to safetensors 0.8: `serialize({name: TensorSpec(dtype, shape, data_ptr, data_len)},
metadata)` reads raw pointers (the caller keeps the buffers alive) and `deserialize(blob)`
returns `[(name, {"dtype": "F32", "shape": [...], "data": bytearray})]`.
"""
import json
import os
import struct
import sys
from array import array
from typing import NamedTuple

import safetensors

from ._files import atomic_write, fsync_dir

# header dtype code -> (bytes per element, the dtype name TensorSpec takes)
DTYPES = {"F64": (8, "float64"), "F32": (4, "float32"), "F16": (2, "float16"), "BF16": (2, "bfloat16"),
          "I64": (8, "int64"), "I32": (4, "int32"), "I16": (2, "int16"), "I8": (1, "int8"), "U8": (1, "uint8"),
          "BOOL": (1, "bool")}
_MAX_HEADER = 100_000_000  # a larger length field is not a header: refuse before allocating it

# safetensors is little-endian and the bytes are handed over as they are in memory.
assert sys.byteorder == "little", "tinyeffnet reads and writes safetensors on little-endian hosts only"


_PICKLE_STARTS = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive, a bare pickle


def is_pickle(path):
    """Whether the file at `path` starts as a PyTorch pickle does (torch.save: a zip archive or a
    bare pickle): what a .pth or .bin file given in place of safetensors usually is."""
    try:
        with open(path, "rb") as f:
            return f.read(4).startswith(_PICKLE_STARTS)
    except OSError:
        return False


class SafetensorsError(ValueError):
    """Why a file is not a readable safetensors file: a short phrase; the caller names the file."""


class Record(NamedTuple):
    dtype: str      # the header's dtype code: "F32", "I64", ...
    shape: tuple
    raw: bytes      # little-endian, row-major

    @property
    def itemsize(self):
        return DTYPES[self.dtype][0]


def read_header(path, blob=None):
    """The JSON header of a safetensors file (a dict; "__metadata__" holds its str -> str
    metadata). Only the header is read from disk unless `blob`, the whole file, is given."""
    try:
        if blob is None:
            with open(path, "rb") as f:
                head = f.read(8)
                size = struct.unpack("<Q", head)[0] if len(head) == 8 else None
                text = f.read(size) if size is not None and size < _MAX_HEADER else None
        else:
            size = struct.unpack("<Q", blob[:8])[0] if len(blob) >= 8 else None
            text = blob[8:8 + size] if size is not None and size < _MAX_HEADER else None
    except OSError as e:
        raise SafetensorsError(e.strerror or type(e).__name__) from None
    if size is None or text is None or len(text) != size:
        raise SafetensorsError("truncated or not a safetensors file")
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise SafetensorsError("its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise SafetensorsError("its header is not a JSON object")
    return header


def read(path):
    """({name: Record}, the file's metadata dict or None) of a safetensors file."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise SafetensorsError(e.strerror or type(e).__name__) from None
    metadata = read_header(path, blob).get("__metadata__")
    try:
        entries = safetensors.deserialize(blob)
    except Exception as e:  # SafetensorError: truncated, overlapping or uncovered data
        raise SafetensorsError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    records = {}
    for name, entry in entries:
        if entry["dtype"] not in DTYPES:
            raise SafetensorsError(f"tensor {name!r} has dtype {entry['dtype']}, which tinyeffnet does not read "
                                   f"(it reads {', '.join(DTYPES)})")
        records[name] = Record(entry["dtype"], tuple(int(d) for d in entry["shape"]), bytes(entry["data"]))
    return records, metadata


def serialize(records, metadata=None):
    """The bytes of a safetensors file holding `records` ({name: Record}) and `metadata` (str -> str)."""
    specs, keep_alive = {}, []
    for name, record in records.items():
        buf = array("B", record.raw)  # serialize reads raw pointers: hold every buffer until it returns
        keep_alive.append(buf)
        specs[name] = safetensors.TensorSpec(dtype=DTYPES[record.dtype][1], shape=list(record.shape),
                                             data_ptr=buf.buffer_info()[0], data_len=len(record.raw))
    return safetensors.serialize(specs, metadata=metadata)


def write(path, blob):
    """Put a serialized file at `path` atomically and durably: nothing appears there unless
    all of it does (tinyeffnet._files)."""
    path = os.fspath(path)
    atomic_write(path, lambda f: f.write(blob), binary=True)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    return path
