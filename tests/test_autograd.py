"""Every differentiable op against central finite differences (float64, Python backend)."""
import os
import subprocess
import sys

import pytest

from backends import ContractError
from tinyeffnet import Tensor, functional as F, no_grad
from tinyeffnet.engine.gradcheck import GradcheckError, check_elementwise, check_projection

TOL = 1e-6
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def T(shape, seed, lo=-1.0, hi=1.0, grad=True):
    return Tensor.uniform(seed, shape, lo, hi, requires_grad=grad)


def check(f, *inputs):
    assert check_elementwise(f, list(inputs)) <= TOL


UNARY = {
    "neg": lambda x: -x,
    "exp": lambda x: x.exp(),
    "sigmoid": lambda x: x.sigmoid(),
    "swish": lambda x: x.swish(),
    "pow3": lambda x: x ** 3,
    "pow2": lambda x: x ** 2,
    "pow-1.5": lambda x: (x * x + 1.0) ** -1.5,
    "relu": lambda x: x.relu(),
    "sum": lambda x: x.sum(),
    "sum_axis": lambda x: x.sum(axis=1),
    "sum_keepdims": lambda x: x.sum(axis=(0, 2), keepdims=True),
    "mean": lambda x: x.mean(axis=-1),
    "max_axis": lambda x: x.max(axis=1),
    "max_all": lambda x: x.max(),
    "reshape": lambda x: x.reshape(6, -1),
    "transpose": lambda x: x.transpose(0, 2),
    "permute": lambda x: x.permute(2, 0, 1),
    "pad": lambda x: x.pad(((1, 0), (0, 2), (1, 1))),
    "slice": lambda x: x.slice((0, 1, 1), (2, 3, 4)),
    "log_softmax": lambda x: F.log_softmax(x),
    "softmax": lambda x: F.softmax(x),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops(name):
    x = T((2, 3, 4), 1, -2.0, 2.0)
    check(UNARY[name], x)


@pytest.mark.parametrize("name,f", [("log", lambda x: x.log()), ("sqrt", lambda x: x.sqrt()),
                                    ("pow0.5", lambda x: x ** 0.5), ("pow-1", lambda x: x ** -1),
                                    ("rdiv", lambda x: 2.0 / x)])
def test_positive_domain_ops(name, f):
    check(f, T((3, 4), 2, 0.5, 2.0))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum"])
@pytest.mark.parametrize("sa,sb", [((2, 3), (2, 3)), ((2, 3), (3,)), ((3, 1), (1, 4)),
                                   ((1, 4), (3, 1)), ((2, 1, 3), (4, 1)), ((), (2, 2))])
def test_binary_ops_broadcast_both_ways(op, sa, sb):
    a = T(sa, 3)
    b = T(sb, 4, 0.5, 1.5) if op == "div" else T(sb, 4)
    fns = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "div": lambda a, b: a / b, "maximum": lambda a, b: a.maximum(b)}
    check(fns[op], a, b)


def test_python_scalars_on_both_sides():
    check(lambda x: 3.0 - x * 2.0 + 1.0 / (x * x + 1.0) - (x + 0.5) * 4.0, T((2, 3), 5))


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((2, 1, 3), (2, 3, 2)),
                                   ((1, 1), (1, 1)), ((5, 1), (1, 3))])
def test_matmul(sa, sb):
    check(lambda a, b: a @ b, T(sa, 6), T(sb, 7))


CONV = [
    # (input NHWC, kernel, stride, groups, out channels)
    ((1, 5, 5, 3), 3, 1, 1, 4),
    ((2, 7, 7, 2), 3, 2, 1, 3),     # odd size, stride 2: SAME pads (1, 1)
    ((1, 6, 6, 2), 3, 2, 1, 2),     # even size, stride 2: SAME pads (0, 1), asymmetric
    ((1, 8, 8, 2), 5, 2, 1, 2),     # kernel 5, stride 2, even: pads (1, 2)
    ((2, 5, 5, 4), 5, 1, 4, 4),     # depthwise 5x5
    ((1, 7, 6, 3), 3, 2, 3, 3),     # depthwise, stride 2, non-square odd/even
    ((2, 4, 4, 3), 1, 1, 1, 5),     # pointwise
    ((1, 1, 1, 4), 3, 1, 4, 4),     # 1x1 spatial depthwise
    ((1, 1, 1, 3), 3, 2, 1, 2),     # 1x1 spatial, stride 2
    ((1, 5, 5, 4), 3, 1, 2, 6),     # general groups
]


@pytest.mark.parametrize("xs,k,stride,groups,co", CONV)
def test_conv2d_same_padding(xs, k, stride, groups, co):
    x, w = T(xs, 8), T((k, k, xs[3] // groups, co), 9)
    check(lambda x, w: F.conv2d(x, w, stride, "SAME", groups), x, w)


def test_same_padding_matches_tensorflow():
    # out = ceil(in / s); the odd pixel of padding goes at the bottom / right.
    assert F.same_padding(224, 3, 2) == (0, 1)
    assert F.same_padding(225, 3, 2) == (1, 1)
    assert F.same_padding(112, 5, 2) == (1, 2)
    assert F.same_padding(7, 3, 1) == (1, 1)
    assert F.same_padding(1, 3, 2) == (1, 1)
    y = F.conv2d(Tensor.zeros((1, 224, 224, 3), backend="meta"), Tensor.zeros((3, 3, 3, 32), backend="meta"), 2)
    assert y.shape == (1, 112, 112, 32)


def test_valid_and_explicit_padding():
    x, w = T((1, 6, 5, 2), 10), T((3, 3, 2, 2), 11)
    check(lambda x, w: F.conv2d(x, w, 1, "VALID"), x, w)
    check(lambda x, w: F.conv2d(x, w, 2, ((2, 0), (1, 3))), x, w)


def test_global_avg_pool_and_linear():
    check(lambda x: F.global_avg_pool(x), T((2, 3, 3, 4), 12))
    check(lambda x, w, b: F.linear(x, w, b), T((3, 4), 13), T((4, 2), 14), T((2,), 15))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy(smoothing):
    logits = T((4, 5), 16, -3.0, 3.0)
    labels = [0, 4, 2, 2]
    check(lambda z: F.cross_entropy(z, labels, smoothing), logits)


def test_cross_entropy_value_by_hand():
    import math
    z = Tensor([[1.0, 2.0, 3.0]])
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    assert abs(F.cross_entropy(z, [2]).item() - (lse - 3.0)) < 1e-12
    smooth = 0.9 * (lse - 3.0) + 0.1 / 3 * sum(lse - v for v in (1.0, 2.0, 3.0))
    assert abs(F.cross_entropy(z, [2], 0.1).item() - smooth) < 1e-12


def test_log_softmax_is_stable_for_huge_logits():
    out = F.log_softmax(Tensor([[1000.0, 0.0, -1000.0]])).tolist()[0]
    assert out[0] == 0.0 and abs(out[1] + 1000.0) < 1e-9


def test_tensor_used_several_times_accumulates():
    x = T((2, 3), 17)
    check(lambda x: x * x + x.exp() * x - x.sum(axis=0, keepdims=True) * x, x)
    y = Tensor([2.0, 3.0], requires_grad=True)
    (y * y * y).sum().backward()  # d/dy y^3 = 3 y^2 through a diamond of uses
    assert y.grad.tolist() == [12.0, 27.0]


def test_grad_accumulates_across_backward_calls():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    assert x.grad.tolist() == [5.0, 5.0]


def test_deep_graph_needs_no_recursion():
    x = Tensor([0.5], requires_grad=True)
    y = x
    for _ in range(5 * sys.getrecursionlimit()):
        y = y * 1.0 + 0.0
    y.sum().backward()
    assert x.grad.tolist() == [1.0]


def test_no_grad_records_nothing():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with no_grad():
        y = (x * x).sum()
    assert not y.requires_grad and y._ctx is None
    with pytest.raises(RuntimeError, match="does not require a gradient"):
        y.backward()


def test_intermediate_gradients_on_request():
    x = Tensor([1.0, -2.0], requires_grad=True)
    h = (x * 3.0).retain_grad()
    (h * h).sum().backward()
    assert h.grad.tolist() == [6.0, -12.0] and x.grad.tolist() == [18.0, -36.0]


def test_projection_check_on_a_bigger_graph():
    x, w1, w2 = T((2, 6, 6, 3), 18), T((3, 3, 3, 8), 19), T((5, 5, 1, 8), 20)
    f = lambda x, w1, w2: F.depthwise_conv2d(F.conv2d(x, w1, 2).swish(), w2).sigmoid().mean()
    assert check_projection(f, [x, w1, w2]) <= TOL


def test_gradcheck_points_at_a_wrong_gradient():
    from tinyeffnet.engine.autograd import Function

    class WrongSquare(Function):
        def forward(self, x):
            self.x = x
            return self.backend.mul(x, x)

        def backward(self, g):  # forgets the factor 2
            return (self.backend.mul(g, self.x),)

    with pytest.raises(GradcheckError, match="input 0 .* at flat index"):
        check_elementwise(lambda x: WrongSquare.apply(x), [T((3,), 21)])
    with pytest.raises(GradcheckError, match="directional derivative"):
        check_projection(lambda x: WrongSquare.apply(x), [T((3,), 21)])


@pytest.mark.parametrize("call,needle", [
    (lambda: T((2, 3), 1) @ T((2, 3), 2), "matmul: cannot multiply (2, 3) by (2, 3)"),
    (lambda: F.conv2d(T((1, 5, 5, 3), 1), T((3, 3, 4, 8), 2)), "conv2d: input (1, 5, 5, 3) has 3 channels"),
    (lambda: T((2, 3), 1) + T((4, 3), 2), "cannot broadcast shapes (2, 3) and (4, 3)"),
    (lambda: T((2, 3), 1).reshape(4, 2), "reshape: cannot reshape (2, 3) to (4, 2)"),
    (lambda: F.cross_entropy(T((2, 3), 1), [0, 1, 2]), "cross_entropy: logits (2, 3) need (N, K)"),
])
def test_wrong_shapes_give_one_clear_error(call, needle):
    with pytest.raises((ContractError, ValueError)) as e:
        call()
    assert needle in str(e.value)


def test_project_modules_never_import_numpy():
    # numpy set to None in sys.modules makes any `import numpy` raise ImportError.
    code = """
import sys
sys.modules['numpy'] = None
from tinyeffnet import Tensor, functional as F
from tinyeffnet.model.efficientnet import build_model
net = build_model(num_classes=3, width=0.25, depth=0.1)
x = Tensor.uniform(0, (2, 16, 16, 3), -1.0, 1.0)
loss = F.cross_entropy(net(x, key=1), [0, 2])
loss.backward()
assert all(p.grad is not None for p in net.parameters())
import tinyeffnet.summary, tinyeffnet.engine.gradcheck, tinyeffnet.bench, backends.meta_backend
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
