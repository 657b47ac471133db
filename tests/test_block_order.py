"""Where SE sits in every block of the paper's seven variants, pinned by the order of what a
block's forward calls (Fig. 1), not by parameter counts (which cannot see the order):

  Fig. 1a (noSE)   [expand 1x1, BN, swish], depthwise, BN, swish, project 1x1, BN, [skip]
  Fig. 1b (base)   ... depthwise, BN, swish, SE, project 1x1, BN, [skip]
  Fig. 1c (SEend)  ... depthwise, BN, swish, project 1x1, BN, SE, [skip]

[skip] is drop-connect then the add of the block's input, in exactly the blocks whose output
has the input's shape (stride 1 and as many channels out as in). The blocks run on the meta
backend (shapes only), full-size B0, so every one of the 16 blocks is checked.
"""
import pytest

from backends import get_backend
from tinyeffnet.engine import functional as F
from tinyeffnet.engine.tensor import Tensor
from tinyeffnet.model import build_model
from tinyeffnet.nn.module import Module

META = get_backend("meta")

# The paper's Table II: the block figure each variant uses, for (blocks without a skip, blocks with one).
FIGURE = {"base": ("1b", "1b"),
          "seend@noskip": ("1c", "1b"), "seend@hasskip": ("1b", "1c"), "seend@all": ("1c", "1c"),
          "nose@noskip": ("1a", "1b"), "nose@hasskip": ("1b", "1a"), "nose@all": ("1a", "1a")}
# Table I: stages of 1, 2, 2, 3, 3, 4, 1 blocks; a stage's later blocks keep its channels and stride 1.
B0_SKIPS = [False, False, True, False, True, False, True, True, False, True, True, False, True, True, True, False]


def traced_forward(block, x, monkeypatch):
    """(output, [(what, input channels)]) of what `block`'s own forward calls, in order: its
    child modules by attribute name, swish, and the add of a skip."""
    calls, depth = [], [0]
    names = {id(m): n for n, m in block._modules.items()}
    module_call, tensor_add, swish = Module.__call__, Tensor.__add__, F.swish

    def nested(what, run, x, *args, **kwargs):
        if depth[0] == 1:  # inside the block's forward, not inside one of its children
            calls.append((what, x.shape[-1]))
        depth[0] += 1
        try:
            return run(x, *args, **kwargs)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(Module, "__call__", lambda self, x, *a, **k: nested(
        names.get(id(self), type(self).__name__), lambda *b, **c: module_call(self, *b, **c), x, *a, **k))
    monkeypatch.setattr(Tensor, "__add__", lambda self, other: nested("add", lambda s: tensor_add(s, other), self))
    monkeypatch.setattr(F, "swish", lambda x: nested("swish", swish, x))
    try:
        out = block(x)
    finally:
        monkeypatch.undo()
    return out, calls


def figure_order(figure, expands, mid, out, skip):
    """The calls Fig. 1's block diagram `figure` prescribes, with the channels each one sees."""
    order = [("expand_conv", None), ("bn0", mid), ("swish", mid)] if expands else []
    order += [("depthwise_conv", mid), ("bn1", mid), ("swish", mid)]
    if figure == "1b":
        order.append(("se", mid))  # on the depthwise conv's output, before the projection
    order += [("project_conv", mid), ("bn2", out)]
    if figure == "1c":
        order.append(("se", out))  # on the projection's output (after its BN), before the skip
    if skip:
        order += [("drop_connect", out), ("add", out)]
    return order


@pytest.mark.parametrize("variant", FIGURE)
def test_every_blocks_order_is_the_papers_figure(variant, monkeypatch):
    net = build_model(variant, num_classes=10, backend="meta").eval()
    x = net.stem(Tensor(META.full((2, 64, 64, 3), 0.0, "float32"), META))
    skips = []
    for index, block in enumerate(net.blocks):
        out, calls = traced_forward(block, x, monkeypatch)
        skip = out.shape == x.shape
        skips.append(skip)
        expands = index > 0  # Table I: only the first stage's block has expand ratio 1
        mid = x.shape[-1] * 6 if expands else x.shape[-1]  # Table I: expand ratio 6
        want = figure_order(FIGURE[variant][skip], expands, mid, out.shape[-1], skip)
        want = [(what, x.shape[-1] if channels is None else channels) for what, channels in want]
        assert calls == want, f"{variant} block {index}: {calls}"
        x = out
    assert skips == B0_SKIPS
