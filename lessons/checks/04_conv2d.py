"""Checks of lesson 04's exercises: SAME padding, and a convolution built by hand: its forward
from the windows, its input gradient and its weight gradient."""
import itertools
import random

from .common import Wrong, exercise, flat, given, same, shape


@exercise("04.1", "same_padding", """Write same_padding(n, k, s) -> (lo, hi), TensorFlow's SAME padding of one
          axis (the lesson's three sentences say how).""", builds="SAME padding",
          answer=("tinyeffnet.engine.functional:same_padding",))
def check_same_padding(same_padding):
    from tinyeffnet import functional as F
    for n, k, s in itertools.product(range(1, 41), (1, 2, 3, 5, 7), (1, 2, 3)):
        got, want = tuple(given(same_padding(n, k, s))), F.same_padding(n, k, s)
        if got != want:
            raise Wrong(f"size {n}, kernel {k}, stride {s}: TensorFlow pads {want}, yours {got}")
    return "equal to TensorFlow's rule for 600 (size, kernel, stride) cases"


# (N, H, W, C_in, C_out, k, stride, padding): "SAME" is TensorFlow's split of each axis, computed
# for that axis. Rows and columns differ in size, padding or both in every case, and most
# paddings are uneven, so that an answer which swaps rows and columns, re-splits the padding it
# is given, or swaps its ends fails.
CASES = [
    (2, 6, 5, 2, 3, 3, 2, "SAME"),                 # rows pad (0, 1), columns (1, 1)
    (1, 5, 7, 3, 2, 3, 1, ((0, 2), (1, 0))),       # uneven, one side only, different per axis
    (2, 6, 7, 2, 2, 3, 2, ((0, 0), (0, 0))),       # VALID: the last row is read by no window
    (1, 7, 6, 1, 3, 5, 2, "SAME"),                 # kernel 5: rows (2, 2), columns (1, 2)
    (2, 1, 5, 3, 2, 3, 1, ((1, 1), (2, 0))),       # one row: a size-1 axis in the middle
    (1, 5, 1, 2, 2, 1, 2, ((0, 1), (0, 0))),       # one column, a 1x1 kernel with stride 2
    (1, 4, 5, 2, 3, 3, 3, ((3, 0), (0, 2))),       # stride 3; padding wider than k - 1 on top
    (2, 4, 4, 2, 2, 2, 1, ((1, 0), (0, 1))),       # an even kernel
]


def _conv_cases(seed):
    """(x, w, stride, padding) of CASES, with random values: padding is explicit ((top, bottom),
    (left, right)), as the exercises take it."""
    from tinyeffnet import Tensor, functional as F
    rng = random.Random(seed)
    out = []
    for n, h, w, c_in, c_out, k, stride, pad in CASES:
        if pad == "SAME":
            pad = (F.same_padding(h, k, stride), F.same_padding(w, k, stride))
        out.append((Tensor.normal(rng.randrange(10 ** 6), (n, h, w, c_in)),
                    Tensor.normal(rng.randrange(10 ** 6), (k, k, c_in, c_out)), stride, pad))
    return out


def _label(x, w, stride, pad):
    return f"x {x.shape}, kernel {w.shape}, stride {stride}, padding {pad}"


@exercise("04.2", "conv2d_windows", """Write conv2d_windows(x, w, stride, padding): the forward convolution
          from its windows, no groups: x (N, H, W, C_in), w (k, k, C_in, C_out), padding ((top, bottom),
          (left, right)) of zeros, rows and columns each their own; output row p starts at padded row
          p * stride; y[n, p, q, o] = sum over a, b, i of xpad[n, p s + a, q s + b, i] * w[a, b, i, o]. Return a
          Tensor or nested lists.""", builds="conv2d's forward",
          answer=("backends.python_backend:PythonBackend._conv2d",))
def check_conv2d_windows(conv2d_windows):
    from tinyeffnet import functional as F
    for x, w, stride, pad in _conv_cases(403):
        _same_numbers(_label(x, w, stride, pad), conv2d_windows(x, w, stride, pad), F.conv2d(x, w, stride, pad))
    return (f"equal to the library's conv2d on {len(CASES)} convolutions: SAME, VALID and uneven padding, rows and "
            "columns padded differently, kernels 1, 2, 3 and 5, strides 1 to 3, one-row and one-column images")


@exercise("04.3", "conv_grad_input", """Write conv_grad_input(dy, w, x_shape, stride, padding): the input's
          gradient dx (shape x_shape) of y = conv2d(x, w, stride, padding): every x[n, r, c, i] collects
          dy[n, p, q, o] * w[a, b, i, o] from each window (p, q) and tap (a, b) that read it
          (r = p s + a - top, c = q s + b - left). Return a Tensor or nested lists.""",
          builds="conv2d's input gradient", answer=("backends.python_backend:PythonBackend._conv2d_grad_input",))
def check_conv_grad_input(conv_grad_input):
    from tinyeffnet import Tensor, functional as F
    for seed, (x, w, stride, pad) in enumerate(_conv_cases(404)):
        y = F.conv2d(x, w, stride, pad)
        dy = Tensor.normal(40 + seed, y.shape)
        xg = Tensor(x.data, requires_grad=True)
        (F.conv2d(xg, w, stride, pad) * dy).sum().backward()
        _same_numbers(f"dx for {_label(x, w, stride, pad)}", conv_grad_input(dy, w, x.shape, stride, pad), xg.grad)
    return f"equal to autograd's dx on {len(CASES)} convolutions (uneven padding, rows and columns apart, strides 1-3)"


@exercise("04.4", "conv_grad_weight", """Write conv_grad_weight(x, dy, k, stride, padding): the gradient of
          the kernel, shape (k, k, C_in, C_out), for y = conv2d(x, w, stride, padding) (x: (N, H, W, C_in),
          dy: (N, Ho, Wo, C_out), padding: ((top, bottom), (left, right))): dw[a, b, i, o] = sum over n, p, q of
          xpad[n, p s + a, q s + b, i] * dy[n, p, q, o]. Return a Tensor or nested lists.""",
          builds="conv2d's weight gradient", answer=("backends.python_backend:PythonBackend._conv2d_grad_weight",))
def check_conv_grad_weight(conv_grad_weight):
    from tinyeffnet import Tensor, functional as F
    for seed, (x, w, stride, pad) in enumerate(_conv_cases(402)):
        dy = Tensor.normal(70 + seed, F.conv2d(x, w, stride, pad).shape)
        wg = Tensor(w.data, requires_grad=True)
        (F.conv2d(x, wg, stride, pad) * dy).sum().backward()
        _same_numbers(f"dw for {_label(x, w, stride, pad)}", conv_grad_weight(x, dy, w.shape[0], stride, pad),
                      wg.grad)
    return f"equal to autograd's dw on {len(CASES)} convolutions (uneven padding, rows and columns apart, strides 1-3)"


def _same_numbers(label, got, want):
    """`same`, after checking that a nested-list answer holds numbers only (the lesson turns it
    into a Tensor)."""
    got = given(got)
    if isinstance(got, (list, tuple)) and shape(got) == want.shape:
        try:
            flat(got)
        except (TypeError, ValueError):
            raise Wrong(f"{label}: nested lists must hold numbers only") from None
    same(label, got, want, 1e-9, 1e-10)
