"""The layers of EfficientNet, each a small Module over `tinyeffnet.engine.functional`.

Parameters are created zero-filled in the backend's default float dtype; `reset_parameters`
fills them (see `tinyeffnet.nn.init`). A layer casts its parameters to the input's dtype,
so bfloat16 compute keeps float32 master weights (the cast's gradient goes back as f32).
"""
from backends import get_backend

from ..engine import functional as F
from ..engine.autograd import no_grad
from ..engine.tensor import Tensor
from . import init as initializers
from .module import Module


def _param(backend, shape, dtype, value=0.0):
    return Tensor(backend.full(shape, value, dtype), backend, requires_grad=True)


def _buffer(backend, shape, dtype, value):
    return Tensor(backend.full(shape, value, dtype), backend)


PADDINGS = ("same", "symmetric")


class Conv2d(Module):
    """Convolution; weight HWIO; no bias unless asked.

    padding "same": TensorFlow's SAME (output ceil(size / stride); an odd total pad puts
    the extra zero at the bottom / right), what the TensorFlow-trained EfficientNets used.
    "symmetric": kernel // 2 zeros on every side, what PyTorch-trained models use; the
    same output size for odd kernels, but a stride-2 window then starts one pixel earlier.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, bias=False,
                 padding="same", backend=None, dtype=None):
        super().__init__()
        b = get_backend(backend)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in {in_channels} and out {out_channels} channels must be "
                             f"divisible by groups {groups}")
        if padding not in PADDINGS:
            raise ValueError(f"Conv2d: padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups, self.padding = kernel_size, stride, groups, padding
        self.weight = _param(b, (kernel_size, kernel_size, in_channels // groups, out_channels), dtype)
        if bias:
            self.bias = _param(b, (out_channels,), dtype)

    @property
    def fans(self):
        """(fan_in, fan_out) as TensorFlow computes them for this kernel."""
        k = self.kernel_size * self.kernel_size
        return k * self.in_channels // self.groups, k * self.out_channels // self.groups

    def reset_parameters(self, scheme, key):
        fan_in, fan_out = self.fans
        self.weight.data = initializers.conv_kernel(scheme, key, self.weight, fan_in, fan_out)
        if "bias" in self._parameters:
            self.bias.data = self.bias.backend.full(self.bias.shape, 0.0, self.bias.dtype)

    def forward(self, x):
        pad = "SAME"
        if self.padding == "symmetric":
            side = (self.kernel_size // 2, self.kernel_size // 2)
            pad = (side, side)
        y = F.conv2d(x, self.weight.astype(x.dtype), self.stride, pad, self.groups)
        if "bias" in self._parameters:
            y = y + self.bias.astype(x.dtype)
        return y


class DepthwiseConv2d(Conv2d):
    """One k x k filter per channel (groups == channels): k*k*C weights, not k*k*C*C."""

    def __init__(self, channels, kernel_size, stride=1, padding="same", backend=None, dtype=None):
        super().__init__(channels, channels, kernel_size, stride, groups=channels, padding=padding, backend=backend,
                         dtype=dtype)

    @property
    def fans(self):
        # TensorFlow stores a depthwise kernel as (k, k, C, 1): fan_in k*k*C, fan_out k*k.
        k = self.kernel_size * self.kernel_size
        return k * self.in_channels, k


class Linear(Module):
    """y = x @ weight + bias, weight of shape (in, out)."""

    def __init__(self, in_features, out_features, bias=True, backend=None, dtype=None):
        super().__init__()
        b = get_backend(backend)
        self.in_features, self.out_features = in_features, out_features
        self.weight = _param(b, (in_features, out_features), dtype)
        if bias:
            self.bias = _param(b, (out_features,), dtype)

    def reset_parameters(self, scheme, key):
        self.weight.data = initializers.dense_kernel(scheme, key, self.weight)
        if "bias" in self._parameters:
            self.bias.data = self.bias.backend.full(self.bias.shape, 0.0, self.bias.dtype)

    def forward(self, x):
        return F.linear(x, self.weight.astype(x.dtype),
                        self.bias.astype(x.dtype) if "bias" in self._parameters else None)


class BatchNorm2d(Module):
    """Batch norm over N, H, W per channel, TensorFlow's defaults: momentum 0.99, eps 1e-3.

    Training: normalise with this batch's mean and (biased) variance and update
        moving = momentum * moving + (1 - momentum) * batch.
    Eval: normalise with the moving statistics. Measuring (Module.measure_statistics):
    normalise with this batch's statistics and make them the moving statistics (momentum 0).
    Statistics and the affine parameters stay in float32 (or float64) whatever the compute
    dtype.
    """

    def __init__(self, channels, momentum=0.99, eps=1e-3, backend=None, dtype=None):
        super().__init__()
        b = get_backend(backend)
        self.channels, self.momentum, self.eps = channels, momentum, eps
        self.gamma = _param(b, (channels,), dtype, 1.0)
        self.beta = _param(b, (channels,), dtype, 0.0)
        self.register_buffer("moving_mean", _buffer(b, (channels,), dtype, 0.0))
        self.register_buffer("moving_var", _buffer(b, (channels,), dtype, 1.0))

    def reset_parameters(self, scheme, key):
        b = self.gamma.backend
        self.gamma.data = b.full(self.gamma.shape, 1.0, self.gamma.dtype)
        self.beta.data = b.full(self.beta.shape, 0.0, self.beta.dtype)
        self.moving_mean.data = b.full(self.moving_mean.shape, 0.0, self.moving_mean.dtype)
        self.moving_var.data = b.full(self.moving_var.shape, 1.0, self.moving_var.dtype)

    def forward(self, x):
        stat_dtype = self.gamma.dtype
        xs = x.astype(stat_dtype)
        if not (self.training or self.measuring):
            y = F.batch_norm_eval(xs, self.gamma, self.beta, self.moving_mean, self.moving_var, self.eps)
            return y.astype(x.dtype)
        y, mean, var = F.batch_norm_train(xs, self.gamma, self.beta, self.eps)
        with no_grad():
            if self.measuring:
                self.moving_mean, self.moving_var = Tensor(mean, x.backend), Tensor(var, x.backend)
            else:
                m = self.momentum
                self.moving_mean = self.moving_mean * m + Tensor(mean, x.backend) * (1.0 - m)
                self.moving_var = self.moving_var * m + Tensor(var, x.backend) * (1.0 - m)
        return y.astype(x.dtype)


class Swish(Module):
    def forward(self, x):
        return F.swish(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class GlobalAvgPool(Module):
    def __init__(self, keepdims=False):
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x):
        return F.global_avg_pool(x, self.keepdims)


class Dropout(Module):
    """Zero each activation with probability `rate` in training, scale the rest by 1 / (1 - rate)."""
    drop = staticmethod(F.dropout)

    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def forward(self, x, key=None):
        if self.training and self.rate > 0.0 and key is None:
            raise ValueError(f"{type(self).__name__}: training mode needs a random key (pass key=...)")
        return self.drop(x, self.rate, key, self.training)


class DropConnect(Dropout):
    """Per-sample stochastic depth on a residual branch, rescaled by the survival probability."""
    drop = staticmethod(F.drop_connect)


class SqueezeExcite(Module):
    """x * sigmoid(expand(swish(reduce(mean_hw(x))))): a learned gate per channel.

    `reduce` (C -> r) and `expand` (r -> C) are 1x1 convolutions with bias.
    """

    def __init__(self, channels, reduced, backend=None, dtype=None):
        super().__init__()
        self.channels, self.reduced = channels, reduced
        self.reduce = Conv2d(channels, reduced, 1, bias=True, backend=backend, dtype=dtype)
        self.expand = Conv2d(reduced, channels, 1, bias=True, backend=backend, dtype=dtype)

    def gate(self, x):
        """The gates, one per example and channel: (N, 1, 1, C), each in (0, 1)."""
        s = F.global_avg_pool(x, keepdims=True)
        return F.sigmoid(self.expand(F.swish(self.reduce(s))))

    def forward(self, x):
        return x * self.gate(x)
