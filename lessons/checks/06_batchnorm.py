"""Checks of lesson 06's exercises: batch norm's training-mode forward, and its backward derived
by hand."""
import random

from .common import Wrong, a_tensor, as_function, exercise, given, same


def _bn_cases():
    """(x, gamma, beta, eps): several images (statistics over the batch, not per image), rows and
    columns of different sizes and size-1 axes in the middle (statistics over N, H and W, not
    some of them), a small variance where eps matters, eps 1e-3, 0.1 and 1e-5."""
    from tinyeffnet import Tensor
    rng = random.Random(601)
    cases = []
    for shape, eps, std in (((2, 3, 2, 3), 1e-3, 1.7), ((3, 1, 4, 2), 0.1, 0.05), ((2, 2, 1, 4), 1e-5, 3.0),
                            ((4, 2, 3, 1), 1e-3, 0.3)):
        x = Tensor.normal(rng.randrange(10 ** 6), shape, std=std) + rng.uniform(-2, 2)
        gamma = Tensor([rng.uniform(-2, 2) for _ in range(shape[-1])])
        beta = Tensor([rng.uniform(-1, 1) for _ in range(shape[-1])])
        cases.append((x, gamma, beta, eps))
    return cases


def _label(x, eps):
    return f"x of shape {x.shape}, eps {eps:g}"


@exercise("06.1", "bn_forward", """Write bn_forward(x, gamma, beta, eps): training-mode batch norm of an NHWC
          Tensor x over N, H and W (the batch's own mean and biased variance per channel, eps inside the
          square root), with Tensor arithmetic; return a Tensor of x's shape.""", builds="batch norm's forward",
          answer=("tinyeffnet.engine.functional:batch_norm_train", "tinyeffnet.engine.ops:BatchNorm.forward"))
def check_bn_forward(bn_forward):
    from tinyeffnet import functional as F, no_grad
    for i, (x, gamma, beta, eps) in enumerate(_bn_cases()):
        want = F.batch_norm_train(x, gamma, beta, eps)[0]
        if i % 2:
            with no_grad():  # where the engine runs it: the forward of a Function
                got = bn_forward(x, gamma, beta, eps)
        else:
            got = bn_forward(x, gamma, beta, eps)
        same(_label(x, eps), a_tensor(_label(x, eps), got, want), want, 1e-9, 1e-10)
    return "equal to the library's batch_norm_train for four shapes (size-1 axes, several images), eps 1e-3 to 1e-5"


@exercise("06.2", "bn_backward", """Write bn_backward(x, gamma, beta, dy, eps) -> (dx, dgamma, dbeta), three
          Tensors shaped like x, gamma and beta, for training-mode batch norm, with Tensor arithmetic, not
          autograd: the engine runs a Function's backward under no_grad, where nothing is taped. Derive dx
          yourself: the output depends on each x_i directly and through the batch's mean and variance.""",
          builds="batch norm's backward", answer=("tinyeffnet.engine.ops:BatchNorm.backward",))
def check_bn_backward(bn_backward):
    from tinyeffnet import Tensor, functional as F, no_grad
    for seed, (x, gamma, beta, eps) in enumerate(_bn_cases()):
        leaves = [Tensor(t.data, requires_grad=True) for t in (x, gamma, beta)]
        dy = Tensor.normal(610 + seed, x.shape)
        (F.batch_norm_train(*leaves, eps)[0] * dy).sum().backward()
        with no_grad():  # as the engine calls it
            try:
                got = given(bn_backward(x, gamma, beta, dy, eps))
            except RuntimeError as e:
                if "does not require a gradient" in str(e):
                    raise Wrong("your bn_backward runs autograd (backward()); the engine calls a Function's "
                                "backward under no_grad, where nothing is taped: derive dx by hand") from None
                raise
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise Wrong("return three things: (dx, dgamma, dbeta)")
        for label, mine, want in zip(("dx", "dgamma", "dbeta"), got, leaves):
            what = f"{label} for {_label(x, eps)}"
            same(what, a_tensor(what, mine, want.grad), want.grad, 1e-8, 1e-10)
    # plugged into the engine as the lesson does: the library's forward with your backward
    x, gamma, beta, eps = _bn_cases()[0]
    Plugged = as_function(lambda x, g, b, eps: F.batch_norm_train(x, g, b, eps)[0],
                          lambda x, g, b, dy, eps: bn_backward(x, g, b, dy, eps), name="YourBatchNorm")
    dy = Tensor.normal(619, x.shape)
    mine = [Tensor(t.data, requires_grad=True) for t in (x, gamma, beta)]
    (Plugged.apply(*mine, eps=eps) * dy).sum().backward()
    theirs = [Tensor(t.data, requires_grad=True) for t in (x, gamma, beta)]
    (F.batch_norm_train(*theirs, eps)[0] * dy).sum().backward()
    for label, m, t in zip(("dx", "dgamma", "dbeta"), mine, theirs):
        same(f"{label} through the engine (your backward in a Function)", m.grad, t.grad, 1e-8, 1e-10)
    return "dx, dgamma and dbeta equal autograd's for four shapes and eps values, also plugged into a Function"
