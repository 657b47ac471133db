"""Read and write IDX files (the MNIST container format), gzipped or plain.

Layout: two zero bytes, a type byte (0x08 = unsigned byte, the only type MNIST-style data
uses), the number of dimensions, each dimension as a big-endian uint32, then the data.
"""
import gzip
import os
import struct
import zlib

from .errors import DataError

UNSIGNED_BYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"cannot read IDX file {path}: {e.strerror or e}") from None
    # Sniff the content rather than trust the name: mirrors ship both .gz and plain files.
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"IDX file {path} is a damaged gzip file ({e}): download it again") from None


def read_idx(path, ndim):
    """(dims, data) of the unsigned-byte IDX file at `path`, which must have `ndim` dimensions."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number): expected the original "
                        f"MNIST-format files, gzipped or not")
    dtype, file_ndim = raw[2], raw[3]
    if dtype != UNSIGNED_BYTE:
        raise DataError(f"{path} holds IDX type 0x{dtype:02x}; only unsigned bytes (0x08) are supported")
    if file_ndim != ndim:
        raise DataError(f"{path} has {file_ndim} dimensions, expected {ndim}: "
                        f"are image and label files swapped?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header: download it again")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = 1
    for d in dims:
        expected *= d
    if len(raw) - header != expected:
        raise DataError(f"{path} holds {len(raw) - header} data bytes but its header {dims} "
                        f"promises {expected}: the file is truncated or damaged, download it again")
    return dims, raw[header:]


def write_idx(path, dims, data):
    """Write an unsigned-byte IDX file; gzipped when `path` ends in .gz.

    The gzip header gets mtime=0 and no file name, so the same data always gives the
    same bytes (the embedded subset is committed and must be reproducible).
    """
    expected = 1
    for d in dims:
        expected *= d
    if len(data) != expected:
        raise DataError(f"IDX data for {path} has {len(data)} bytes, dims {tuple(dims)} need {expected}")
    blob = bytes([0, 0, UNSIGNED_BYTE, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(data)
    with open(path, "wb") as f:
        if str(path).endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
                gz.write(blob)
        else:
            f.write(blob)
    return os.path.getsize(path)
