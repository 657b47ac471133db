"""Layers: finite-difference gradients (float64, Python backend) and hand-computed behaviour."""
import math

import pytest

from tinyeffnet import Tensor, functional as F
from tinyeffnet.model.efficientnet import BlockSpec, MBConv, build_model
from tinyeffnet.engine.gradcheck import check_elementwise, check_projection
from tinyeffnet.nn import (BatchNorm2d, Conv2d, DepthwiseConv2d, DropConnect, Dropout, GlobalAvgPool, Linear,
                           Sigmoid, SqueezeExcite, Swish, initialize)

TOL = 1e-6


def T(shape, seed, lo=-1.0, hi=1.0, grad=True):
    return Tensor.uniform(seed, shape, lo, hi, requires_grad=grad)


def randomize(module, seed=0):
    """Random values in every parameter (zero biases and unit gammas hide gradient bugs)."""
    for i, (_, p) in enumerate(module.named_parameters()):
        p.data = Tensor.uniform(seed * 1000 + i, p.shape, -1.0, 1.0).data
        if p.ndim == 1:
            p.data = Tensor.uniform(seed * 1000 + i, p.shape, 0.5, 1.5).data
    return module


def module_fn(module, **kwargs):
    """f(x, *params) for gradcheck: the module run with the given Tensors as its parameters."""
    names = [n for n, _ in module.named_parameters()]

    def f(x, *params):
        with module.bind(dict(zip(names, params))):
            return module(x, **kwargs)
    return f, [Tensor(p.data, requires_grad=True) for p in module.parameters()]


def check_module(module, x, projection=False, **kwargs):
    f, params = module_fn(module, **kwargs)
    check = check_projection if projection else check_elementwise
    assert check(f, [x] + params) <= TOL


@pytest.mark.parametrize("make,xs", [
    (lambda: Conv2d(3, 4, 3, stride=2, bias=True), (2, 5, 5, 3)),
    (lambda: Conv2d(2, 3, 1), (1, 3, 4, 2)),
    (lambda: DepthwiseConv2d(4, 5, stride=2), (2, 6, 7, 4)),
    (lambda: DepthwiseConv2d(3, 3), (1, 1, 1, 3)),
    (lambda: Linear(5, 3), (4, 5)),
    (lambda: SqueezeExcite(6, 2), (2, 3, 3, 6)),
    (lambda: Swish(), (2, 3)),
    (lambda: Sigmoid(), (2, 3)),
    (lambda: GlobalAvgPool(), (2, 3, 2, 4)),
])
def test_layer_gradients(make, xs):
    check_module(randomize(make()), T(xs, 1))


def test_batchnorm_train_gradients_flow_through_batch_statistics():
    bn = randomize(BatchNorm2d(3))
    check_module(bn.train(), T((2, 3, 2, 3), 2, -2.0, 3.0))
    check_module(bn.train(), T((4, 1, 1, 3), 3))  # 1x1 spatial: statistics over the batch only


def test_batchnorm_eval_gradients():
    bn = randomize(BatchNorm2d(3))
    bn.moving_mean = Tensor([0.5, -0.2, 0.1])
    bn.moving_var = Tensor([2.0, 0.5, 1.5])
    check_module(bn.eval(), T((2, 2, 2, 3), 4))


def test_batchnorm_train_and_eval_by_hand():
    bn = BatchNorm2d(2)
    bn.gamma.data = Tensor([2.0, 1.0]).data
    bn.beta.data = Tensor([0.5, -1.0]).data
    x = Tensor([[[[1.0, 10.0]]], [[[3.0, 20.0]]], [[[5.0, 30.0]]], [[[7.0, 40.0]]]])  # (4, 1, 1, 2)
    mean, var = [4.0, 25.0], [5.0, 125.0]                 # biased variance over the 4 values
    y = bn.train()(x).tolist()
    for i, row in enumerate(y):
        for c in range(2):
            xv = x.tolist()[i][0][0][c]
            want = (xv - mean[c]) / math.sqrt(var[c] + 1e-3) * [2.0, 1.0][c] + [0.5, -1.0][c]
            assert abs(row[0][0][c] - want) < 1e-12
    # moving = 0.99 * moving + 0.01 * batch, from mean 0 and var 1
    assert bn.moving_mean.tolist() == pytest.approx([0.01 * 4.0, 0.01 * 25.0], abs=1e-15)
    assert bn.moving_var.tolist() == pytest.approx([0.99 + 0.01 * 5.0, 0.99 + 0.01 * 125.0], abs=1e-13)
    bn(x)  # a second step compounds: m2 = 0.99 * m1 + 0.01 * batch
    assert bn.moving_mean.tolist() == pytest.approx([0.99 * 0.04 + 0.04, 0.99 * 0.25 + 0.25], abs=1e-15)
    # eval uses the moving statistics, and does not update them
    mm, mv = bn.moving_mean.tolist(), bn.moving_var.tolist()
    y = bn.eval()(x).tolist()
    assert y[1][0][0][0] == pytest.approx((3.0 - mm[0]) / math.sqrt(mv[0] + 1e-3) * 2.0 + 0.5, abs=1e-12)
    assert bn.moving_mean.tolist() == mm


def test_bn_momentum_is_configurable():
    bn = BatchNorm2d(1, momentum=0.9)
    bn(Tensor([[[[2.0]]], [[[4.0]]]]))
    assert bn.moving_mean.tolist() == pytest.approx([0.1 * 3.0])


def test_dropout_and_drop_connect_are_identity_in_eval():
    x = T((4, 2, 2, 3), 5, grad=False)
    for layer in (Dropout(0.5), DropConnect(0.5)):
        assert layer.eval()(x).tolist() == x.tolist()
        assert layer.eval()(x, key=7).tolist() == x.tolist()


def test_dropout_in_training():
    x = Tensor.ones((1, 4000))
    y = Dropout(0.25).train()(x, key=3).to_flat()
    assert set(round(v, 12) for v in y) == {0.0, round(1 / 0.75, 12)}
    assert abs(sum(1 for v in y if v == 0.0) / 4000 - 0.25) < 0.03
    with pytest.raises(ValueError, match="needs a random key"):
        Dropout(0.25).train()(x)


def test_drop_connect_drops_whole_samples():
    x = T((64, 2, 2, 3), 6, 0.5, 1.0, grad=False)
    y = DropConnect(0.5).train()(x, key=4).tolist()
    kept = 0
    for xi, yi in zip(x.tolist(), y):
        flat_x = [v for r in xi for c in r for v in c]
        flat_y = [v for r in yi for c in r for v in c]
        if all(v == 0.0 for v in flat_y):
            continue
        kept += 1
        assert flat_y == pytest.approx([v / 0.5 for v in flat_x])
    assert 16 < kept < 48


def test_dropout_and_drop_connect_gradients_with_a_fixed_key():
    check_module(Dropout(0.3).train(), T((3, 5), 7), key=11)
    check_module(DropConnect(0.3).train(), T((6, 2, 2, 2), 8), key=12)


@pytest.mark.parametrize("se_position", ["dw", "end", None])
@pytest.mark.parametrize("cin,cout,stride,expand", [(4, 4, 1, 2), (3, 5, 2, 2), (4, 4, 1, 1)])
def test_mbconv_gradients_every_se_position(se_position, cin, cout, stride, expand):
    spec = BlockSpec(stage=3, in_channels=cin, out_channels=cout, expand_ratio=expand, kernel=3,
                     stride=stride, se_position=se_position, drop_rate=0.2)
    block = randomize(MBConv(spec), seed=1).train()
    assert block.spec.has_skip == (stride == 1 and cin == cout)
    check_module(block, T((2, 5, 5, cin), 9), projection=True, key=5)
    if se_position is not None:  # SE bottleneck from the block INPUT channels wherever it sits
        assert block.se.reduced == max(1, int(cin * 0.25))
        assert block.se.channels == (cin * expand if se_position == "dw" else cout)
    else:
        assert "se" not in block._modules


def test_mbconv_small_block_elementwise():
    spec = BlockSpec(3, 2, 2, 2, 3, 1, "end", 0.0)
    block = randomize(MBConv(spec), seed=2).train()
    check_module(block, T((2, 3, 3, 2), 10))


def test_tiny_efficientnet_end_to_end_gradient():
    # Xavier weights with BN gammas and betas moved off 1 and 0, so that every term counts.
    net = build_model("seend@hasskip", num_classes=4, width=0.25, depth=0.1, seed=3).train()
    for i, (name, p) in enumerate(net.named_parameters()):
        if p.ndim == 1:
            lo, hi = (0.8, 1.2) if name.endswith("gamma") else (-0.2, 0.2)
            p.data = Tensor.uniform(i, p.shape, lo, hi).data
    assert len(net.blocks) == 7 and {b.spec.se_position for b in net.blocks} == {"dw", "end"}
    labels = [0, 3, 1]
    names = [n for n, _ in net.named_parameters()]

    def loss(x, *params):
        with net.bind(dict(zip(names, params))):
            return F.cross_entropy(net(x, key=6), labels, label_smoothing=0.1)

    params = [Tensor(p.data, requires_grad=True) for p in net.parameters()]
    x = T((3, 16, 16, 3), 11)
    for mode in ("train", "eval"):
        net.train(mode == "train")
        for seed in range(2):
            assert check_projection(loss, [x] + params, seed=seed) <= TOL, mode


def test_init_schemes():
    conv = Conv2d(8, 16, 3)
    initialize(conv, "xavier", seed=0)
    limit = math.sqrt(6 / (9 * 8 + 9 * 16))
    w = conv.weight.to_flat()
    assert max(abs(v) for v in w) <= limit and max(abs(v) for v in w) > 0.9 * limit
    dw = DepthwiseConv2d(64, 5)
    initialize(dw, "tf", seed=0)
    w = dw.weight.to_flat()
    std = math.sqrt(sum(v * v for v in w) / len(w))
    assert abs(std - math.sqrt(2 / 25)) < 0.02  # fan_out = k*k for depthwise
    fc = Linear(32, 10)
    initialize(fc, "tf", seed=0)
    assert max(abs(v) for v in fc.weight.to_flat()) <= 1 / math.sqrt(10)
    assert fc.bias.to_flat() == [0.0] * 10
    a = build_model(width=0.25, depth=0.1, seed=5).state_dict()
    b = build_model(width=0.25, depth=0.1, seed=5).state_dict()
    c = build_model(width=0.25, depth=0.1, seed=6).state_dict()
    assert all(a[k].to_flat() == b[k].to_flat() for k in a)
    assert any(a[k].to_flat() != c[k].to_flat() for k in a)
    with pytest.raises(ValueError, match="unknown init scheme 'he'"):
        initialize(conv, "he")
