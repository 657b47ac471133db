"""PyTorch's tensor layouts <-> tinyeffnet's, moving bytes only (bit for bit, any dtype).

    convolution   PyTorch OIHW (out, in / groups, kh, kw)  <->  ours HWIO (kh, kw, in / groups, out)
    dense         PyTorch (out, in)                         <->  ours (in, out)
    vector        BN statistics and affine, biases: the same on both sides

Both rearrangements reverse the order of three axes: OIHW is (O, I, H*W) -> (H*W, I, O),
and a dense weight is (out, 1, in) -> (in, 1, out). `reverse_axes` copies whole strided
slices at a time (array slicing moves items without converting them), so a 1280 x 320
kernel takes 320 slice copies, not 409,600 item copies.
"""
from array import array

from .._safetensors import Record

_CODE = {1: "B", 2: "H", 4: "I", 8: "Q"}  # an unsigned type of each width: bits move untouched
assert all(array(code).itemsize == size for size, code in _CODE.items()), "unexpected C type widths"


def reverse_axes(raw, itemsize, a, b, c):
    """The bytes of a row-major (a, b, c) tensor laid out as (c, b, a)."""
    code = _CODE[itemsize]
    src = array(code)
    src.frombytes(raw)
    out = array(code, bytes(len(raw)))
    if a <= c:  # copy a * b contiguous rows of c into strided slots
        for i in range(a):
            for j in range(b):
                start = (i * b + j) * c
                out[j * a + i::b * a] = src[start:start + c]
    else:  # gather c * b strided columns into contiguous rows of a
        for k in range(c):
            for j in range(b):
                start = (k * b + j) * a
                out[start:start + a] = src[j * c + k::b * c]
    return out.tobytes()


def _three_axes(o, i, hw):
    # (O, I, HW) reversed; with I == 1 or HW == 1 the middle axis of size 1 takes fewer copies.
    if hw == 1:
        return o, 1, i
    if i == 1:
        return o, 1, hw
    return o, i, hw


def conv_to_ours(record):
    """OIHW -> HWIO."""
    o, i, h, w = record.shape
    return Record(record.dtype, (h, w, i, o), reverse_axes(record.raw, record.itemsize, *_three_axes(o, i, h * w)))


def conv_to_torch(record):
    """HWIO -> OIHW."""
    h, w, i, o = record.shape
    a, b, c = _three_axes(o, i, h * w)
    return Record(record.dtype, (o, i, h, w), reverse_axes(record.raw, record.itemsize, c, b, a))


def dense_to_ours(record):
    """(out, in) -> (in, out)."""
    o, i = record.shape
    return Record(record.dtype, (i, o), reverse_axes(record.raw, record.itemsize, o, 1, i))


def dense_to_torch(record):
    """(in, out) -> (out, in)."""
    i, o = record.shape
    return Record(record.dtype, (o, i), reverse_axes(record.raw, record.itemsize, i, 1, o))


# kind -> (theirs -> ours, ours -> theirs, ours shape -> theirs shape)
LAYOUTS = {
    "conv": (conv_to_ours, conv_to_torch, lambda s: (s[3], s[2], s[0], s[1])),
    "dense": (dense_to_ours, dense_to_torch, lambda s: (s[1], s[0])),
    "vector": (lambda r: r, lambda r: r, lambda s: tuple(s)),
}
