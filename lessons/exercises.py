"""The course's exercises and their checks.

An exercise has an id ("04.2": lesson 04, second exercise), the name of what the learner
writes (a function, a class or a value), the task, and a check. A check gets the learner's
answer and returns a short note when it is right; raises `Unfinished` when it is not
written yet (a learner's `NotImplementedError`, a `None` or `...` answer count the same);
raises `Wrong` with what is wrong otherwise.

The checks compare with the library (its functions, autograd, finite differences, the meta
backend's counts), never with a copy of the answer, and tests/test_lessons.py feeds each
one a wrong answer to make sure it says so.
"""
import contextlib
import itertools
import math
import random
import struct
from dataclasses import dataclass


class Unfinished(Exception):
    """The answer is not written yet."""


class Wrong(Exception):
    """The answer is written, and wrong: the message says how."""


@dataclass
class Exercise:
    id: str
    name: str
    task: str
    check: object

    def run(self, answer, **context):
        """('passed' | 'todo' | 'wrong', message)."""
        if answer is None or answer is Ellipsis:
            return "todo", self.task
        try:
            note = self.check(answer, **context)
        except (Unfinished, NotImplementedError) as e:
            return "todo", (f"{e} " if isinstance(e, Unfinished) and str(e) else "") + self.task
        except Wrong as e:
            return "wrong", str(e)
        except AssertionError as e:
            return "wrong", str(e) or "an assertion failed"
        except Exception as e:  # the learner's code crashed: say where it hurts
            return "wrong", f"your code raised {type(e).__name__}: {e}"
        return "passed", note or ""


EXERCISES = {}


def exercise(exercise_id, name, task):
    def register(check):
        EXERCISES[exercise_id] = Exercise(exercise_id, name, " ".join(task.split()), check)
        return check
    return register


def of_lesson(number):
    return sorted(i for i in EXERCISES if i.startswith(number + "."))


def given(value):
    """A value the learner's code returned; None or ... mean it is not written yet."""
    if value is None or value is Ellipsis:
        raise Unfinished()
    return value


def _close(got, want, rel=1e-9, abs_=1e-12):
    return abs(got - want) <= max(abs_, rel * abs(want))


def _flat(value):
    """A Tensor, backend array or nested list as a flat list of floats."""
    from tinyeffnet import Tensor
    value = given(value)
    if isinstance(value, Tensor):
        return value.to_flat()
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)] if value and isinstance(value[0], (list, tuple)) \
            else [float(v) for v in value]
    if hasattr(value, "shape"):  # a backend array
        from backends import get_backend
        return get_backend("python").to_flat(value)
    return [float(value)]


def _number(value):
    value = given(value)
    return value.item() if hasattr(value, "item") else float(value)


def _python():
    from backends import get_backend
    return get_backend("python")


@contextlib.contextmanager
def _meta_counting():
    """The meta backend, its MAC counter given back as the lesson left it."""
    from backends import get_backend
    meta = get_backend("meta")
    saved = meta.macs
    try:
        yield meta
    finally:
        meta.macs = saved


# ---------------------------------------------------------------------------- lesson 01
@exercise("01.1", "flat_index", """Write flat_index(index, shape): the position of element `index` (a tuple
          such as (n, h, w, c)) in the flat row-major list of an array of `shape`.""")
def _check_flat_index(flat_index):
    from tinyeffnet import Tensor
    for shape in [(5,), (2, 3), (3, 4, 5), (2, 3, 2, 4)]:
        values = Tensor(_python().from_flat(list(range(math.prod(shape))), shape)).tolist()
        for index in itertools.product(*map(range, shape)):
            want = values
            for i in index:
                want = want[i]
            got = given(flat_index(index, shape))
            if got != int(want):
                raise Wrong(f"flat_index({index}, {shape}) = {got}, but that element sits at {int(want)}")
    return "right for every element of four shapes"


@exercise("01.2", "conv_macs", """Write conv_macs(x_shape, kernel_shape, stride, groups): the multiply-accumulates
          of conv2d with SAME padding, x NHWC and the kernel HWIO (I = C_in / groups). Every output value
          is a sum of k * k * I products.""")
def _check_conv_macs(conv_macs):
    from tinyeffnet import Tensor, functional as F
    cases = [((1, 224, 224, 3), (3, 3, 3, 32), 2, 1), ((2, 56, 56, 24), (1, 1, 24, 144), 1, 1),
             ((1, 28, 28, 144), (5, 5, 1, 144), 2, 144), ((1, 15, 15, 8), (3, 3, 4, 6), 2, 2)]
    for x_shape, w_shape, stride, groups in cases:
        with _meta_counting() as meta:
            meta.macs = 0
            F.conv2d(Tensor(meta.full(x_shape, 0.0), meta), Tensor(meta.full(w_shape, 0.0), meta), stride, "SAME",
                     groups)
            want = meta.macs
        got = given(conv_macs(x_shape, w_shape, stride, groups))
        if got != want:
            raise Wrong(f"conv_macs{(x_shape, w_shape, stride, groups)} = {got:,}; the meta backend counts {want:,}")
    return "agrees with the meta backend on four convolutions, strided and grouped"


# ---------------------------------------------------------------------------- lesson 02
def _function_class(cls):
    from tinyeffnet import Function
    if not (isinstance(cls, type) and issubclass(cls, Function)):
        raise Wrong(f"expected a subclass of tinyeffnet.Function, got {cls!r}")


@exercise("02.2", "Tanh", """Write Tanh, a Function: forward returns tanh(x) from backend primitives
          (tanh(x) = 2 sigmoid(2x) - 1; there is no tanh primitive) and keeps what backward needs; backward
          returns (grad * (1 - tanh(x)^2),).""")
def _check_tanh(Tanh):
    from tinyeffnet import Tensor
    from tinyeffnet.engine.gradcheck import GradcheckError, check_elementwise
    _function_class(Tanh)
    v = Tensor([[-2.5, -0.7, 0.0, 0.3, 1.9]], requires_grad=True)
    for x, y in zip(v.to_flat(), Tanh.apply(v).to_flat()):
        if not _close(y, math.tanh(x), 1e-12):
            raise Wrong(f"forward: tanh({x}) is {math.tanh(x):.12f}, yours gives {y:.12f}")
    try:
        error = check_elementwise(lambda v: Tanh.apply(v), [v])
    except GradcheckError as e:
        raise Wrong(f"backward: {e}") from None
    return f"forward exact, backward within {error:.0e} of finite differences"


@exercise("02.1", "expression_grads", """Write expression_grads(a, b) -> (dL/da, dL/db) for
          L = sigmoid(a*b + a*a) * 3, by hand with the chain rule (floats in, floats out; sigmoid' = s (1 - s)).""")
def _check_expression_grads(expression_grads):
    from tinyeffnet import Tensor
    for a0, b0 in [(2.0, -3.0), (0.5, 0.25), (-1.5, 2.0), (0.0, 1.0)]:
        a, b = Tensor(a0, requires_grad=True), Tensor(b0, requires_grad=True)
        ((a * b + a * a).sigmoid() * 3.0).backward()
        got = given(expression_grads(a0, b0))
        want = (a.grad.item(), b.grad.item())
        if len(got) != 2 or not all(_close(g, w, 1e-9) for g, w in zip(got, want)):
            raise Wrong(f"at a={a0}, b={b0} autograd gives (dL/da, dL/db) = ({want[0]:.6f}, {want[1]:.6f}), "
                        f"yours {tuple(round(g, 6) for g in got)}")
    return "matches autograd at four points"


# ---------------------------------------------------------------------------- lesson 03
@exercise("03.2", "numeric_grad", """Write numeric_grad(f, x, index, eps=1e-5): the central difference
          (f(x + eps e_i) - f(x - eps e_i)) / (2 eps) of a scalar-valued f at Tensor x, nudging flat element
          `index` only. Build the nudged tensors from x.to_flat() and x.shape.""")
def _check_numeric_grad(numeric_grad):
    from tinyeffnet import Tensor
    functions = [("sum(x^3)", lambda t: (t * t * t).sum()), ("mean(x sigmoid(x))", lambda t: (t.sigmoid() * t).mean()),
                 ("log(sum(exp(x)))", lambda t: t.exp().sum().log())]
    for label, f in functions:
        x = Tensor([[1.5, -0.4, 0.9], [2.0, 0.1, -1.3]], requires_grad=True)
        f(x).backward()
        analytic = x.grad.to_flat()
        for index in range(6):
            got = _number(numeric_grad(f, Tensor(x.data), index))
            if not _close(got, analytic[index], 1e-7, 1e-9):
                raise Wrong(f"{label}, element {index}: the derivative is {analytic[index]:.10f}, yours "
                            f"{got:.10f} (off by {abs(got - analytic[index]):.1e}: one-sided differences are "
                            "off by about eps, central ones by eps^2)")
    return "within 1e-7 of autograd for three functions, every element"


@exercise("03.1", "central_error", """Write central_error(eps): the leading term of the error of the central
          difference of exp at x = 1 (Taylor: the even terms cancel, the eps^2 f'''(x) / 6 term stays).""")
def _check_central_error(central_error):
    for eps in (1e-1, 1e-2, 1e-3):
        measured = abs((math.exp(1 + eps) - math.exp(1 - eps)) / (2 * eps) - math.e)
        got = _number(central_error(eps))
        if not _close(got, measured, 0.01):
            raise Wrong(f"at eps {eps:g} the measured error is {measured:.3e}, your estimate {got:.3e}")
    return "within 1% of the measured error at eps 1e-1, 1e-2, 1e-3"


# ---------------------------------------------------------------------------- lesson 04
@exercise("04.1", "same_padding", """Write same_padding(n, k, s) -> (lo, hi), TensorFlow's SAME padding of one
          axis: the output has ceil(n / s) entries, the total padding is what makes the last window fit
          (never negative), and an odd pixel goes at the end.""")
def _check_same_padding(same_padding):
    from tinyeffnet import functional as F
    for n, k, s in itertools.product(range(1, 41), (1, 2, 3, 5, 7), (1, 2, 3)):
        got, want = tuple(given(same_padding(n, k, s))), F.same_padding(n, k, s)
        if got != want:
            raise Wrong(f"size {n}, kernel {k}, stride {s}: TensorFlow pads {want}, yours {got}")
    return "equal to TensorFlow's rule for 600 (size, kernel, stride) cases"


@exercise("04.2", "conv_grad_weight", """Write conv_grad_weight(x, dy, k, stride, padding): the gradient of
          the kernel, shape (k, k, C_in, C_out), for y = conv2d(x, w, stride, padding) (x: (N, H, W, C_in),
          dy: (N, Ho, Wo, C_out), padding: ((top, bottom), (left, right))): dw[a, b, i, o] = sum over n, p, q of
          xpad[n, p s + a, q s + b, i] * dy[n, p, q, o]. Return a Tensor or nested lists.""")
def _check_conv_grad_weight(conv_grad_weight):
    from tinyeffnet import Tensor, functional as F
    cases = [((2, 6, 6, 2), 3, 4, 2), ((1, 7, 7, 3), 3, 2, 2), ((1, 8, 8, 2), 5, 3, 2), ((1, 5, 5, 1), 3, 1, 1)]
    for seed, (x_shape, k, c_out, stride) in enumerate(cases):
        x = Tensor.normal(seed, x_shape)
        pad = (F.same_padding(x_shape[1], k, stride), F.same_padding(x_shape[2], k, stride))
        w_shape = (k, k, x_shape[3], c_out)
        dy = Tensor.normal(50 + seed, F.conv2d(x, Tensor.zeros(w_shape), stride, pad).shape)
        dw = _flat(conv_grad_weight(x, dy, k, stride, pad))
        if len(dw) != math.prod(w_shape):
            raise Wrong(f"x {x_shape}, stride {stride}: dw needs {math.prod(w_shape)} values {w_shape}, yours has "
                        f"{len(dw)}")
        for trial in range(2):  # <conv(x, w), dy> = <w, dw> for any w
            w = Tensor.normal(100 + 10 * seed + trial, w_shape)
            lhs = sum(a * b for a, b in zip(F.conv2d(x, w, stride, pad).to_flat(), dy.to_flat()))
            rhs = sum(a * b for a, b in zip(w.to_flat(), dw))
            if not _close(lhs, rhs, 1e-9):
                raise Wrong(f"x {x_shape}, kernel {k}, stride {stride}, padding {pad}: <conv(x, w), dy> = {lhs:.9f} "
                            f"but <w, your dw> = {rhs:.9f}")
    return "adjoint to conv2d for four shapes (strides 1 and 2, TensorFlow padding)"


# ---------------------------------------------------------------------------- lesson 05
@exercise("05.1", "separable_cost", """Write separable_cost(h, w, c_in, c_out, k, stride) -> (macs, weights)
          of a depthwise k x k convolution (SAME padding, the stride) followed by a 1x1 convolution to c_out
          channels, on an (h, w, c_in) input, no biases.""")
def _check_separable_cost(separable_cost):
    from tinyeffnet import Tensor
    from tinyeffnet.nn import Conv2d, DepthwiseConv2d
    for h, w, c_in, c_out, k, stride in [(56, 56, 144, 40, 5, 2), (112, 112, 32, 16, 3, 1), (15, 15, 24, 48, 3, 2),
                                         (7, 7, 1152, 320, 3, 1)]:
        layers = [DepthwiseConv2d(c_in, k, stride, backend="meta"), Conv2d(c_in, c_out, 1, backend="meta")]
        with _meta_counting() as meta:
            meta.macs = 0
            x = Tensor(meta.full((1, h, w, c_in), 0.0), meta)
            for layer in layers:
                x = layer(x)
            want = (meta.macs, sum(layer.num_parameters() for layer in layers))
        got = tuple(given(separable_cost(h, w, c_in, c_out, k, stride)))
        if got != want:
            raise Wrong(f"{(h, w, c_in, c_out, k, stride)}: the meta backend counts {want[0]:,} MACs and "
                        f"{want[1]:,} weights, yours {got}")
    return "agrees with the meta backend on four layers"


# ---------------------------------------------------------------------------- lesson 06
@exercise("06.1", "bn_backward", """Write bn_backward(x, gamma, dy, eps) -> (dx, dgamma) for training-mode
          batch norm over N, H, W of an NHWC Tensor x, with Tensor arithmetic (mean, sum, *, -, ** -0.5), not
          autograd: xhat = (x - mean) * invstd, dgamma = sum(dy * xhat),
          dx = invstd / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)) with dxhat = dy * gamma.""")
def _check_bn_backward(bn_backward):
    from tinyeffnet import Tensor, functional as F
    for seed, shape in enumerate([(2, 3, 3, 4), (4, 2, 2, 3)]):
        x = Tensor.normal(seed, shape, requires_grad=True)
        gamma = Tensor([0.5 + 0.5 * c for c in range(shape[-1])], requires_grad=True)
        beta = Tensor([0.1] * shape[-1], requires_grad=True)
        dy = Tensor.normal(10 + seed, shape)
        (F.batch_norm_train(x, gamma, beta, 1e-3)[0] * dy).sum().backward()
        got = given(bn_backward(Tensor(x.data), Tensor(gamma.data), dy, 1e-3))
        if len(got) != 2:
            raise Wrong("return two things: (dx, dgamma)")
        for label, mine, want in (("dx", got[0], x.grad), ("dgamma", got[1], gamma.grad)):
            mine = _flat(mine)
            if len(mine) != want.size or not all(_close(a, b, 1e-8, 1e-10) for a, b in zip(mine, want.to_flat())):
                worst = max((abs(a - b) for a, b in zip(mine, want.to_flat())), default=float("inf"))
                raise Wrong(f"{label} for x of shape {shape} differs from autograd (largest difference {worst:.1e}, "
                            f"{len(mine)} values for {want.size})")
    return "dx and dgamma equal autograd's for two shapes"


# ---------------------------------------------------------------------------- lesson 07
@exercise("07.2", "swish_grad", """Write swish_grad(x): the derivative of swish(x) = x sigmoid(x) at a float x
          (product rule; sigmoid' = s (1 - s)).""")
def _check_swish_grad(swish_grad):
    from tinyeffnet import Tensor
    for x0 in (-6.0, -3.0, -1.278, -0.5, 0.0, 0.4, 2.0, 7.0):
        x = Tensor(x0, requires_grad=True)
        x.swish().backward()
        got = _number(swish_grad(x0))
        if not _close(got, x.grad.item(), 1e-12):
            raise Wrong(f"swish'({x0}) = {x.grad.item():.12f} by autograd, yours {got:.12f}")
    return "equal to autograd at eight points"


@exercise("07.1", "softplus", """Write softplus(x) = log(1 + exp(x)) for a float x so that it never overflows
          and keeps full precision where it is tiny (x = -40: about 4.2e-18), the way the stable sigmoid does:
          split on the sign of x and use math.log1p.""")
def _check_softplus(softplus):
    from tinyeffnet import Tensor
    sigmoid = Tensor([-1000.0, -40.0, -3.0, 0.0, 2.5, 40.0, 1000.0]).sigmoid().to_flat()
    values = {x: _number(softplus(x)) for x in (-1000.0, -40.0, -3.0, 0.0, 2.5, 40.0, 1000.0)}
    if not _close(values[0.0], math.log(2), 1e-14):
        raise Wrong(f"softplus(0) = log 2 = {math.log(2):.15f}, yours {values[0.0]}")
    if not 0.0 <= values[-1000.0] < 1e-300 or not _close(values[1000.0], 1000.0, 1e-15):
        raise Wrong(f"softplus(-1000) should be 0 (about 5e-435) and softplus(1000) 1000; yours give "
                    f"{values[-1000.0]} and {values[1000.0]}")
    if not _close(values[-40.0], sigmoid[1], 1e-12, 0.0):  # for very negative x, softplus(x) = exp(x) = sigmoid(x)
        raise Wrong(f"softplus(-40) is {sigmoid[1]:.6e}; yours {values[-40.0]:.6e} lost it to round-off "
                    "(1 + 4e-18 is 1 in float64: use log1p)")
    for x, s in zip((-3.0, 2.5, 40.0), (sigmoid[2], sigmoid[4], sigmoid[5])):  # softplus' = sigmoid
        h = 1e-5
        slope = (_number(softplus(x + h)) - _number(softplus(x - h))) / (2 * h)
        if not _close(slope, s, 1e-6):
            raise Wrong(f"the slope of softplus at {x} should be sigmoid({x}) = {s:.8f}; yours is {slope:.8f}")
        if not _close(values[x] - _number(softplus(-x)), x, 1e-12):
            raise Wrong(f"softplus(x) - softplus(-x) = x fails at x = {x}")
    return "no overflow at +-1000, full precision at -40, slope = the library's sigmoid"


# ---------------------------------------------------------------------------- lesson 08
def _se_cases():
    from tinyeffnet.model.efficientnet import BlockSpec, block_specs
    specs = block_specs("base") + block_specs("base", width=0.25, depth=0.1)
    return specs + [BlockSpec(2, 3, 8, 6, 3, 1, "dw", 0.0)]  # 3 input channels: int(0.75) would be 0


@exercise("08.1", "se_parameters", """Write se_parameters(channels, block_in): the parameters of the SE module
          on `channels` channels in a block whose input has `block_in` channels (bottleneck
          r = max(1, int(block_in * 0.25)), two 1x1 convolutions with biases).""")
def _check_se_parameters(se_parameters):
    from dataclasses import replace

    from tinyeffnet.model.efficientnet import MBConv
    for spec in _se_cases():
        mid = spec.in_channels * spec.expand_ratio
        with_se = MBConv(replace(spec, se_position="dw"), backend="meta").num_parameters()
        without = MBConv(replace(spec, se_position=None), backend="meta").num_parameters()
        got = given(se_parameters(mid, spec.in_channels))
        if got != with_se - without:
            raise Wrong(f"SE on {mid} channels in a block with {spec.in_channels} input channels has "
                        f"{with_se - without:,} parameters, yours {got:,}")
    return f"right for all {len(_se_cases())} blocks tried, thin ones included"


@exercise("08.2", "se_operations", """Write se_operations(h, w, c, r): the arithmetic of an SE module on an
          (h, w, c) feature map with bottleneck r: one add per value for the average pool's sums, the MACs of
          its two 1x1 convolutions, one multiply per value for the gates (ignore biases, swish, sigmoid and
          the pool's c divisions).""")
def _check_se_operations(se_operations):
    from tinyeffnet import Tensor
    from tinyeffnet.nn import SqueezeExcite
    for h, w, c, r in [(56, 56, 96, 4), (112, 112, 32, 8), (7, 7, 1152, 48), (14, 14, 480, 20)]:
        with _meta_counting() as meta:
            meta.macs = 0
            x = Tensor(meta.full((1, h, w, c), 0.0), meta)
            SqueezeExcite(c, r, backend="meta")(x)
            macs = meta.macs
        want = macs + 2 * x.size  # the convolutions' MACs, then one add and one multiply per value
        got = given(se_operations(h, w, c, r))
        if got != want:
            raise Wrong(f"{(h, w, c, r)}: {macs:,} MACs in the 1x1 convolutions plus {x.size:,} pool adds and "
                        f"{x.size:,} gate multiplies = {want:,}; yours {got:,}")
    return "right for four SE modules of B0"


# ---------------------------------------------------------------------------- lesson 09
@exercise("09.1", "mbconv_parameters", """Write mbconv_parameters(spec): the trainable parameters of an MBConv
          block from its BlockSpec: [expand 1x1 + BN] + depthwise k x k + BN + [SE, where spec.se_position
          puts it] + project 1x1 + BN. BN trains 2 numbers per channel; the convolutions have no biases.""")
def _check_mbconv_parameters(mbconv_parameters):
    from tinyeffnet.model.efficientnet import MBConv, block_specs
    specs = [s for v in ("base", "seend@all", "nose@all") for s in block_specs(v)]
    specs += block_specs("seend@all", width=0.25, depth=0.1)
    for spec in specs:
        want = MBConv(spec, backend="meta").num_parameters()
        got = given(mbconv_parameters(spec))
        if got != want:
            raise Wrong(f"{spec}: {want:,} parameters, yours {got:,}")
    return f"right for {len(specs)} blocks: every B0 block at every SE position"


# ---------------------------------------------------------------------------- lesson 10
@exercise("10.1", "seend_parameters", """Write seend_parameters(variant, base_count): the parameter count of a
          seend@X variant from base's count, without building it: for every block whose SE moves
          (block_specs(variant) says "end"), take away the SE on in * expand channels and add one on the
          block's out channels; r stays max(1, int(in * 0.25)).""")
def _check_seend_parameters(seend_parameters):
    from tinyeffnet.model.efficientnet import EfficientNet
    base = EfficientNet("base", backend="meta").num_parameters()
    for variant in ("seend@hasskip", "seend@noskip", "seend@all"):
        want = EfficientNet(variant, backend="meta").num_parameters()
        got = given(seend_parameters(variant, base))
        if got != want:
            raise Wrong(f"{variant} has {want:,} parameters, yours {got:,} ({got - want:+,})")
    return "exact for seend@hasskip, seend@noskip and seend@all"


@exercise("10.2", "xavier_limit", """Write xavier_limit(kernel, c_in, c_out, depthwise): the bound of the
          Glorot uniform initial weights sqrt(6 / (fan_in + fan_out)) of a k x k convolution with TensorFlow's
          fans: k*k*c_in and k*k*c_out, but k*k*C and k*k for a depthwise kernel (stored as (k, k, C, 1)).""")
def _check_xavier_limit(xavier_limit):
    from tinyeffnet.nn import Conv2d, DepthwiseConv2d
    for k, c_in, c_out, depthwise in [(3, 3, 32, False), (1, 16, 96, False), (3, 96, 96, True), (5, 240, 240, True)]:
        layer = DepthwiseConv2d(c_in, k, backend="meta") if depthwise else Conv2d(c_in, c_out, k, backend="meta")
        want = math.sqrt(6.0 / sum(layer.fans))
        got = _number(xavier_limit(k, c_in, c_out, depthwise))
        if not _close(got, want, 1e-12):
            raise Wrong(f"{'depthwise ' if depthwise else ''}{k}x{k}, {c_in} -> {c_out}: the library's fans "
                        f"{layer.fans} give {want:.6f}, yours {got:.6f}")
    return "equal to the library's fans for plain and depthwise kernels"


# ---------------------------------------------------------------------------- lesson 11
@exercise("11.2", "nesterov_step", """Write nesterov_step(param, grad, velocity, lr, momentum, weight_decay)
          -> (new_param, new_velocity) for one float parameter: g = grad + weight_decay * param,
          v = g + momentum * velocity, param - lr * (g + momentum * v).""")
def _check_nesterov_step(nesterov_step):
    from tinyeffnet.training.optimizer import NesterovSGD, apply_updates
    py = _python()
    rng = random.Random(3)
    for _ in range(3):
        lr, momentum, wd = rng.choice([0.1, 0.05]), rng.choice([0.9, 0.8]), rng.choice([1e-4, 1e-2])
        sgd = NesterovSGD(py, ["conv.weight"], momentum, wd)
        param = rng.uniform(-2, 2)
        params = {"conv.weight": py.from_flat([param], (1,))}
        state, velocity = sgd.init(params), 0.0
        for step in range(3):
            grad = rng.uniform(-1, 1)
            updates, state = sgd.update({"conv.weight": py.from_flat([grad], (1,))}, state, params)
            params = apply_updates(py, params, updates, lr)
            got = given(nesterov_step(param, grad, velocity, lr, momentum, wd))
            want = (py.to_flat(params["conv.weight"])[0], py.to_flat(state["trace"]["conv.weight"])[0])
            if len(got) != 2 or not (_close(got[0], want[0], 1e-12) and _close(got[1], want[1], 1e-12)):
                raise Wrong(f"step {step + 1} (lr {lr}, momentum {momentum}, weight decay {wd}): NesterovSGD gives "
                            f"param {want[0]:.10f}, velocity {want[1]:.10f}; yours {got}")
            param, velocity = got
    return "nine steps equal to NesterovSGD's"


@exercise("11.1", "smoothing_floor", """Write smoothing_floor(num_classes, smoothing): the lowest possible
          cross-entropy with label smoothing, the entropy of the smoothed target (1 - s + s/K on the label,
          s/K elsewhere).""")
def _check_smoothing_floor(smoothing_floor):
    from tinyeffnet import Tensor, functional as F
    for k, s in [(10, 0.1), (1000, 0.1), (3, 0.25)]:
        target = [1 - s + s / k] + [s / k] * (k - 1)
        best = F.cross_entropy(Tensor([[math.log(t) for t in target]]), [0], label_smoothing=s).item()
        got = _number(smoothing_floor(k, s))
        if not _close(got, best, 1e-9):
            raise Wrong(f"{k} classes, smoothing {s}: logits log(target) reach loss {best:.6f} (the minimum); "
                        f"yours {got:.6f}")
    return "equal to the library's loss at its minimum for three cases"


# ---------------------------------------------------------------------------- lesson 12
@exercise("12.1", "leaky_relu", """Write leaky_relu(x, slope) on Tensors: x where x > 0, slope * x elsewhere
          (0 < slope < 1), with Tensor operations only, so that it runs under jax.jit: a Python `if` on a
          traced value cannot be decided. Hint: Tensor.maximum.""")
def _check_leaky_relu(leaky_relu):
    import jax

    from backends import get_backend
    from tinyeffnet import Tensor
    jb = get_backend("jax")
    values = [-2.0, -0.5, -0.01, 0.3, 1.5, 4.0]

    def f(array):
        x = Tensor(array, jb, requires_grad=True)
        y = given(leaky_relu(x, 0.1))
        y.sum().backward()
        return y.data, x.grad.data

    try:
        y, grad = jax.jit(f)(jb.from_flat(values, (6,)))
    except jax.errors.ConcretizationTypeError:
        raise Wrong("a Python if (or bool()) on a traced value: jit cannot decide it; use Tensor operations") from None
    for v, out, g in zip(values, y.tolist(), grad.tolist()):
        want, want_g = (v, 1.0) if v > 0 else (0.1 * v, 0.1)
        if not (_close(out, want, 1e-6) and _close(g, want_g, 1e-6)):
            raise Wrong(f"at {v}: leaky_relu should be {want} with slope {want_g}; yours {out:.6f} with slope {g:.6f}")
    return "compiles under jax.jit; values and our gradients right"


# ---------------------------------------------------------------------------- lesson 13
def _bfloat16_cases():
    rng = random.Random(5)
    cases = [rng.gauss(0, 1) * 10 ** rng.randint(-8, 8) for _ in range(300)]
    cases += [1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -(1.0 + 2 ** -8), 3.0e38, 1e-40, 0.0, 1.0]  # ties, huge, subnormal
    return cases


@exercise("13.1", "to_bfloat16", """Write to_bfloat16(v): the float32 value v rounded to bfloat16 (the top 16
          bits of the float32: sign, 8 exponent bits, 7 mantissa bits), round to nearest, ties to even. Hint:
          struct.unpack('<I', struct.pack('<f', v)) gives the bits.""")
def _check_to_bfloat16(to_bfloat16):
    import jax.numpy as jnp
    cases = _bfloat16_cases()
    want = jnp.asarray(cases, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32).tolist()
    for v, w in zip(cases, want):
        v32 = struct.unpack("<f", struct.pack("<f", v))[0]
        got = _number(to_bfloat16(v32))
        if got != w:
            raise Wrong(f"{v32!r} in bfloat16 is {w!r} (as JAX rounds it); yours {got!r}")
    return f"equal to JAX's rounding for {len(cases)} values, ties and subnormals included"


# ---------------------------------------------------------------------------- lesson 14
@exercise("14.1", "exceeds_spread", """Write exceeds_spread(variant_top1, base_top1): whether a variant's
          mean top-1 differs from base's by more than 2 x sqrt(std_variant^2 + std_base^2), sample standard
          deviations over seeds (statistics.stdev); None when either has fewer than two seeds.""")
def _check_exceeds_spread(exceeds_spread):
    from tinyeffnet.experiments.table2 import build_table
    cases = [([0.80, 0.82, 0.81], [0.70, 0.71, 0.69]), ([0.80, 0.82, 0.81], [0.79, 0.83, 0.80]),
             ([0.5, 0.6], [0.52, 0.58]), ([0.90], [0.50, 0.52]), ([0.30, 0.31, 0.32, 0.33], [0.35, 0.36, 0.37, 0.38]),
             ([0.50, 0.54], [0.455, 0.475])]  # the last: inside 2 x the sample spread, outside with n instead of n - 1
    for variant_top1, base_top1 in cases:
        runs = {"base": [dict(seed=i, top1=t, top5=t) for i, t in enumerate(base_top1)],
                "nose@all": [dict(seed=i, top1=t, top5=t) for i, t in enumerate(variant_top1)]}
        want = build_table(runs, ["base", "nose@all"], {}, None)["variants"]["nose@all"]["delta_top1_exceeds_spread"]
        got = exceeds_spread(variant_top1, base_top1)
        if got is not want and got != want:
            raise Wrong(f"variant {variant_top1} against base {base_top1}: the report says {want}, yours {got}")
    return f"agrees with the report's rule on {len(cases)} cases"


# ---------------------------------------------------------------------------- lesson 15
@exercise("15.1", "my_variant", """Set my_variant to a variant of your own, a name build_model understands that
          is none of the paper's seven: SE moved to the end (seend@stageA) or removed (nose@stageA-B) in a
          range of Table I's stages 2..8, e.g. nose@stage2-7 keeps SE only in the last stage.""")
def _check_my_variant(my_variant):
    from tinyeffnet.model.efficientnet import VARIANTS, block_specs, canonical_variant
    try:
        name = canonical_variant(given(my_variant))
    except ValueError as e:
        raise Wrong(str(e)) from None
    if name in VARIANTS:
        raise Wrong(f"{name} is one of the paper's seven: pick a range of stages")
    if [s.se_position for s in block_specs(name)] == [s.se_position for s in block_specs("base")]:
        raise Wrong(f"{name} builds the same network as base")
    return f"build_model understands {name!r}"


@exercise("15.2", "my_variant_parameters", """Write my_variant_parameters(base_count): your variant's parameters
          (full B0, 1000 classes) from base's count and block_specs, as in lesson 10, without building it.""")
def _check_my_variant_parameters(my_variant_parameters, variant=None):
    from tinyeffnet.model.efficientnet import build_model
    if variant is None:
        raise Unfinished("Choose your variant first (exercise 15.1).")
    base = build_model("base", backend="meta").num_parameters()
    want = build_model(variant, backend="meta").num_parameters()
    got = given(my_variant_parameters(base))
    if got != want:
        raise Wrong(f"{variant} has {want:,} parameters, yours {got:,} ({got - want:+,})")
    return f"{variant}: {want:,} parameters, {want - base:+,} against base"
