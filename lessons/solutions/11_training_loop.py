"""Reference solutions of lesson 11's exercises."""
import math

from tinyeffnet import Tensor, functional as F
from tinyeffnet.training.optimizer import apply_updates


def nesterov_step(param, grad, velocity, lr, momentum, weight_decay):
    g = grad + weight_decay * param
    v = g + momentum * velocity
    return param - lr * (g + momentum * v), v


def smoothing_floor(num_classes, smoothing):
    on = 1 - smoothing + smoothing / num_classes
    off = smoothing / num_classes
    return -(on * math.log(on) + (num_classes - 1) * off * math.log(off))


def train_step(net, optimizer, state, images, labels, key, lr, label_smoothing):
    net.train()
    with net.bind(state["params"], state["buffers"]) as leaves:
        logits = net(Tensor(images, net.backend), key=key)
        loss = F.cross_entropy(logits, labels, label_smoothing)
        loss.backward()
        grads = {name: leaf.grad.data for name, leaf in leaves.items()}
        buffers = {name: b.data for name, b in net.named_buffers()}  # BN statistics this batch moved
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = apply_updates(net.backend, state["params"], updates, lr)
    return dict(params=params, buffers=buffers, opt_state=opt_state), loss
