"""Reference solutions of lesson 09's exercises."""
from tinyeffnet import functional as F


def mbconv_forward(block, x, key=None):
    spec = block.spec
    h = x
    if spec.expand_ratio != 1:
        h = F.swish(block.bn0(block.expand_conv(h)))
    h = F.swish(block.bn1(block.depthwise_conv(h)))
    if spec.se_position == "dw":
        h = block.se(h)
    h = block.bn2(block.project_conv(h))  # no activation after the projection: a linear bottleneck
    if spec.se_position == "end":
        h = block.se(h)
    if spec.has_skip:
        h = block.drop_connect(h, key) + x
    return h
