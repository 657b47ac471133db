"""The block probe (tinyeffnet/experiments/block_probe.py) reads what the forward computes."""
import math

import pytest

from backends import get_backend
from tinyeffnet.engine import functional as F
from tinyeffnet.engine.tensor import Tensor
from tinyeffnet.experiments.block_probe import block_statistics
from tinyeffnet.model import build_model

PY = get_backend("python")


def _by_hand(net, images):
    """Per block: output RMS and the SE gates' mean, from the layers called one by one."""
    x = net.stem(Tensor(images, PY))
    rows = []
    for block in net.blocks:
        se = block._modules.get("se")
        gates = None
        if se is not None:
            h = x
            if block.spec.expand_ratio != 1:
                h = F.swish(block.bn0(block.expand_conv(h)))
            h = F.swish(block.bn1(block.depthwise_conv(h)))
            if block.spec.se_position == "end":
                h = block.bn2(block.project_conv(h))
            g = F.sigmoid(se.expand(F.swish(se.reduce(F.global_avg_pool(h, keepdims=True)))))
            gates = PY.to_flat(g.data)
        x = block(x)
        values = PY.to_flat(x.data)
        rows.append((math.sqrt(sum(v * v for v in values) / len(values)),
                     None if gates is None else sum(gates) / len(gates)))
    return rows


@pytest.mark.parametrize("variant", ["base", "seend@all", "nose@hasskip"])
def test_probe_matches_the_layers_called_by_hand(variant):
    net = build_model(variant, num_classes=3, backend="python", width=0.1, depth=0.1, seed=0)
    net.eval()  # moving statistics: the by-hand pass must not change them before the probe's
    images = PY.normal(PY.key(3), (2, 16, 16, 3), "float64")
    params = {n: p.data for n, p in net.named_parameters()}
    buffers = {n: b.data for n, b in net.named_buffers()}
    want = _by_hand(net, images)
    got, logits = block_statistics(net, params, buffers, images, train=False)
    assert net.training  # left in training mode, as found by the trainer
    net.eval()
    assert PY.to_flat(logits) == PY.to_flat(net(Tensor(images, PY)).data)  # the network's own forward
    assert len(got) == len(want) == len(net.blocks)
    for row, (rms, gate) in zip(got, want):
        assert abs(row["out_rms"] - rms) < 1e-12 * max(1.0, rms), row
        if gate is None:
            assert row["se"] == "none" and "gate_mean" not in row
        else:
            assert abs(row["gate_mean"] - gate) < 1e-12, row
            assert 0.0 <= row["gate_low"] <= 1.0 and 0.0 <= row["gate_high"] <= 1.0
        assert row["bn2_var"] > 0 and row["bn2_gamma"] > 0


def test_probe_in_training_mode_uses_batch_statistics_without_noise():
    net = build_model("seend@all", num_classes=3, backend="python", width=0.1, depth=0.1, seed=0, drop_connect=0.5)
    images = PY.normal(PY.key(3), (2, 16, 16, 3), "float64")
    params = {n: p.data for n, p in net.named_parameters()}
    buffers = {n: b.data for n, b in net.named_buffers()}
    first = block_statistics(net, params, buffers, images, train=True)[0]  # no key needed: no drop-connect
    assert first == block_statistics(net, params, buffers, images, train=True)[0]
    assert first != block_statistics(net, params, buffers, images, train=False)[0]
    assert net.training
