"""Checks of lesson 08's exercise: the squeeze-and-excitation module's forward."""
import random

from .common import Wrong, a_tensor, exercise, given, same

# (N, H, W, C, r): several images (a gate per image), rows and columns of different sizes, a
# one-row and a one-column map (the mean over H and W, not over one of them), r = 1 and r = C.
SHAPES = [(2, 3, 4, 5, 2), (3, 1, 4, 4, 1), (2, 4, 1, 3, 3), (1, 2, 3, 6, 2), (2, 2, 2, 2, 1)]


@exercise("08.1", "se_forward", """Write se_forward(x, w_reduce, b_reduce, w_expand, b_expand): the SE module's
          forward on an NHWC Tensor x with C channels: the mean over H and W per (image, channel); a 1x1
          convolution to r channels (w_reduce (1, 1, C, r), bias b_reduce) and swish; a 1x1 convolution back
          to C (w_expand (1, 1, r, C), bias b_expand) and sigmoid: one gate per (image, channel); x times its
          gate. Tensor operations (mean, reshape, @ or F.conv2d, swish, sigmoid, *), so that autograd reaches
          x and the four parameters.""", builds="the SE module's forward",
          answer=("tinyeffnet.nn.layers:SqueezeExcite",))
def check_se_forward(se_forward):
    from tinyeffnet import Tensor
    from tinyeffnet.nn import SqueezeExcite
    rng = random.Random(801)
    for n, h, w, c, r in SHAPES:
        se = SqueezeExcite(c, r)
        for _, p in se.named_parameters():  # random weights and biases
            p.data = Tensor.normal(rng.randrange(10 ** 6), p.shape).data
        x = Tensor.normal(rng.randrange(10 ** 6), (n, h, w, c), requires_grad=True)
        want = se(x)
        dy = Tensor.normal(rng.randrange(10 ** 6), want.shape)
        (want * dy).sum().backward()
        params = [se.reduce.weight, se.reduce.bias, se.expand.weight, se.expand.bias]
        leaves = [Tensor(t.data, requires_grad=True) for t in [x] + params]
        label = f"x of shape {(n, h, w, c)}, r = {r}"
        got = a_tensor(label, given(se_forward(*leaves)), want)
        same(label, got, want, 1e-9, 1e-12)
        if not got.requires_grad:
            raise Wrong(f"{label}: your output is not on autograd's tape (requires_grad is False): build it with "
                        "Tensor operations on x and the weights, so that gradients reach them")
        (got * dy).sum().backward()
        for name, mine, theirs in zip(("x", "w_reduce", "b_reduce", "w_expand", "b_expand"), leaves, [x] + params):
            if mine.grad is None:
                raise Wrong(f"{label}: no gradient reaches {name} through your SE")
            same(f"{label}: the gradient of {name} through your SE", mine.grad, theirs.grad, 1e-8, 1e-11)
    return (f"equal to SqueezeExcite, values and the gradients of x and the four parameters, for {len(SHAPES)} random "
            "shapes and weights (several images, one-row and one-column maps, r = 1)")
