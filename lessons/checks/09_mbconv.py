"""Checks of lesson 09's exercise: the MBConv block's forward, with its skip."""
import random

from .common import Wrong, a_tensor, exercise, given, python, same


def _blocks():
    """Block specs reaching every branch of the forward: expand 1 and more, kernels 3 and 5,
    strides 1 and 2 (skip or none), SE after the depthwise conv, at the end and nowhere, a
    drop-connect rate above 0 wherever there is a skip."""
    from tinyeffnet.model.efficientnet import BlockSpec
    return [BlockSpec(2, 4, 4, 1, 3, 1, "dw", 0.5), BlockSpec(3, 4, 6, 3, 3, 2, "dw", 0.0),
            BlockSpec(4, 5, 5, 2, 5, 1, "end", 0.5), BlockSpec(5, 4, 4, 2, 3, 1, None, 0.5),
            BlockSpec(6, 3, 5, 1, 5, 1, "end", 0.0), BlockSpec(7, 4, 4, 3, 3, 2, "end", 0.5),
            BlockSpec(8, 4, 4, 1, 5, 2, None, 0.5)]


def make_block(spec, seed):
    """An MBConv with random weights and random BN statistics (so that eval mode, which uses
    them, differs from training mode), on the pure-Python backend, in training mode."""
    from tinyeffnet import Tensor
    from tinyeffnet.model.efficientnet import MBConv
    rng = random.Random(seed)
    block = MBConv(spec, bn_momentum=0.9)
    for name, t in list(block.named_parameters()) + list(block.named_buffers()):
        values = Tensor.normal(rng.randrange(10 ** 6), t.shape, std=0.5)
        if name.endswith("moving_var") or name.endswith("gamma"):
            values = Tensor([abs(v) + 0.5 for v in values.to_flat()]).reshape(*t.shape)
        t.data = values.data
    return block


@exercise("09.1", "mbconv_forward", """Write mbconv_forward(block, x, key): an MBConv block's forward from its
          parts (block.expand_conv and block.bn0 when spec.expand_ratio != 1, block.depthwise_conv, block.bn1,
          block.se where spec.se_position puts it, block.project_conv, block.bn2, swish where the paper has
          it) and its skip when block.spec.has_skip, through block.drop_connect(h, key). Each part runs once
          (a BN in training mode moves its statistics every time it runs). Not block(x) or block.forward:
          that is the answer.""", builds="the MBConv block's forward with its skip",
          answer=("tinyeffnet.model.efficientnet:MBConv.forward",))
def check_mbconv_forward(mbconv_forward):
    from tinyeffnet import Tensor
    py = python()

    def refuse(*args, **kwargs):
        raise Wrong("mbconv_forward called the block's own forward: build it from the block's parts")

    for i, spec in enumerate(_blocks()):
        for mode in ("train", "eval") if i in (0, 2, 5) else ("train",):
            theirs, mine = make_block(spec, 900 + i), make_block(spec, 900 + i)
            if mode == "eval":
                theirs.eval(), mine.eval()
            x = Tensor.normal(910 + i, (2, 5, 6, spec.in_channels), requires_grad=True)
            key = py.key(920 + i)
            want = theirs(x, key)
            dy = Tensor.normal(930 + i, want.shape)
            (want * dy).sum().backward()
            label = (f"block {i} (expand {spec.expand_ratio}, kernel {spec.kernel}, stride {spec.stride}, SE "
                     f"{spec.se_position}, skip {spec.has_skip}, {mode} mode)")
            x_mine = Tensor(x.data, requires_grad=True)
            mine.forward = refuse
            try:
                got = given(mbconv_forward(mine, x_mine, key))
            finally:
                del mine.forward
            same(label, a_tensor(label, got, want), want, 1e-9, 1e-11)
            for (name, b_mine), (_, b_theirs) in zip(mine.named_buffers(), theirs.named_buffers()):
                same(f"{label}: the BN statistic {name} after your forward (each BN runs once)", b_mine, b_theirs,
                     1e-9, 1e-12)
            if not got.requires_grad:
                raise Wrong(f"{label}: your output is not on autograd's tape: build it from the block's parts")
            (got * dy).sum().backward()
            same(f"{label}: the gradient of x through your forward", x_mine.grad, x.grad, 1e-8, 1e-11)
            for (name, p_mine), (_, p_theirs) in zip(mine.named_parameters(), theirs.named_parameters()):
                if p_mine.grad is None:
                    raise Wrong(f"{label}: no gradient reaches {name} through your forward")
                same(f"{label}: the gradient of {name}", p_mine.grad, p_theirs.grad, 1e-8, 1e-11)
    return ("equal to MBConv (values, BN statistics, gradients of x and every parameter) on seven random blocks: "
            "expand 1 and >1, kernels 3 and 5, strides 1 and 2, SE dw/end/none, drop-connect, training and eval mode")
