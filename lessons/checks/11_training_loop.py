"""Checks of lesson 11's exercises: the floor of the smoothed loss, one Nesterov step, and the
training step."""
import math
import random

from .common import Wrong, close, exercise, given, number, python


@exercise("11.1", "smoothing_floor", """Write smoothing_floor(num_classes, smoothing): the lowest possible
          cross-entropy with label smoothing, the entropy of the smoothed target (1 - s + s/K on the label,
          s/K elsewhere).""")
def check_smoothing_floor(smoothing_floor):
    from tinyeffnet import Tensor, functional as F
    rng = random.Random(1101)
    for k, s in [(10, 0.1), (1000, 0.1), (3, 0.25)] + [(rng.randint(2, 50), rng.uniform(0.01, 0.5)) for _ in range(3)]:
        target = [1 - s + s / k] + [s / k] * (k - 1)
        best = F.cross_entropy(Tensor([[math.log(t) for t in target]]), [0], label_smoothing=s).item()
        got = number(smoothing_floor(k, s))
        if not close(got, best, 1e-9):
            raise Wrong(f"{k} classes, smoothing {s:.4f}: logits log(target) reach loss {best:.6f} (the minimum); "
                        f"yours {got:.6f}")
    return "equal to the library's loss at its minimum for six cases"


@exercise("11.2", "nesterov_step", """Write nesterov_step(param, grad, velocity, lr, momentum, weight_decay)
          -> (new_param, new_velocity) for one float parameter that gets weight decay, as the lesson's
          optimizer does it (decay into the gradient, then the velocity, then Nesterov's look-ahead step).""")
def check_nesterov_step(nesterov_step):
    from tinyeffnet.training.optimizer import NesterovSGD, apply_updates
    py = python()
    rng = random.Random(1102)
    for _ in range(3):
        lr, momentum, wd = rng.uniform(0.01, 0.2), rng.uniform(0.5, 0.95), rng.choice([1e-4, 1e-2, 0.1])
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
            if len(got) != 2 or not (close(got[0], want[0], 1e-12) and close(got[1], want[1], 1e-12)):
                raise Wrong(f"step {step + 1} (lr {lr:.3f}, momentum {momentum:.3f}, weight decay {wd}): NesterovSGD "
                            f"gives param {want[0]:.10f}, velocity {want[1]:.10f}; yours {got}")
            param, velocity = got
    return "nine steps equal to NesterovSGD's"


def _tiny_training_case(seed, label_smoothing):
    """A tiny B0 with dropout and drop-connect, and a state whose arrays all differ from the
    network's own (parameters, BN statistics, momentum): a step must bind the state's
    parameters AND buffers. The network is left in eval mode: a step must switch it to training."""
    from tinyeffnet.model import build_model
    from tinyeffnet.training import step as steps
    from tinyeffnet.training.optimizer import NesterovSGD
    py = python()
    rng = random.Random(seed)

    def noise(array, low, high, positive=False):
        values = [v + rng.uniform(low, high) for v in py.to_flat(array)]
        return py.from_flat([abs(v) + 0.1 for v in values] if positive else values, py.shape(array))

    net = build_model("base", num_classes=3, width=0.1, depth=0.1, seed=seed, bn_momentum=0.9, dropout=0.3,
                      drop_connect=0.3)
    optimizer = NesterovSGD(py, [n for n, _ in net.named_parameters()], 0.9, 1e-2)
    state = steps.init_state(net, optimizer)
    state["params"] = {n: noise(a, -0.05, 0.05) for n, a in state["params"].items()}
    state["buffers"] = {n: noise(a, -0.5, 0.5, positive=n.endswith("moving_var")) for n, a in state["buffers"].items()}
    state["opt_state"] = dict(trace={n: noise(py.full(py.shape(t), 0.0), -0.1, 0.1)
                                     for n, t in state["opt_state"]["trace"].items()})
    images = py.from_flat([rng.uniform(-1, 1) for _ in range(2 * 8 * 8 * 3)], (2, 8, 8, 3))
    labels = py.from_flat([rng.randrange(3) for _ in range(2)], (2,), "int32")
    net.eval()
    return net, optimizer, state, images, labels, py.key(seed), rng.uniform(0.05, 0.5), label_smoothing


def _copy(state):
    """The state's dicts copied (the arrays are shared: nothing changes them in place)."""
    return {group: _copy(value) if isinstance(value, dict) else value for group, value in state.items()}


def _compare_states(label, got, want, before):
    py = python()
    if not isinstance(got, dict) or not all(isinstance(got.get(g), dict) for g in ("params", "buffers", "opt_state")):
        raise Wrong(f"{label}: the new state must be a dict of params, buffers and opt_state (each a dict of arrays), "
                    f"yours is {type(got).__name__}" + (f" with {sorted(got)}" if isinstance(got, dict) else ""))
    pairs = [(group, name, array, got[group].get(name)) for group in ("params", "buffers")
             for name, array in want[group].items()]
    pairs += [("momentum", name, array, got["opt_state"].get("trace", {}).get(name))
              for name, array in want["opt_state"]["trace"].items()]
    for group, name, theirs, mine in pairs:
        if mine is None:
            raise Wrong(f"{label}: the new state has no {group} entry {name!r}")
        if not hasattr(mine, "shape") or py.shape(mine) != py.shape(theirs) or py.dtype(mine) != py.dtype(theirs):
            raise Wrong(f"{label}: {group} {name!r} must be a {py.dtype(theirs)} array of shape {py.shape(theirs)} "
                        f"on the network's backend (leaf.grad.data, b.data), yours is {type(mine).__name__}")
        m, t = py.to_flat(mine), py.to_flat(theirs)
        if not all(close(a, b, 1e-9, 1e-12) for a, b in zip(m, t)):
            worst = max(abs(a - b) for a, b in zip(m, t))
            old = before["opt_state"]["trace"][name] if group == "momentum" else before[group][name]
            raise Wrong(f"{label}: {group} {name!r} differs from the library's step by up to {worst:.1e}"
                        + (" (yours did not change it)" if m == py.to_flat(old) else "")
                        + (": bind the state's buffers too (net.bind(params, buffers)), and read the new ones "
                           "inside the with block" if group == "buffers" else ""))


@exercise("11.3", "train_step", """Write train_step(net, optimizer, state, images, labels, key, lr,
          label_smoothing) -> (new state, loss): one training step. state = dict(params, buffers, opt_state)
          of arrays. Put the net in training mode, bind the parameters and buffers into it
          (`with net.bind(params, buffers) as leaves`), run it on Tensor(images) with the key (dropout,
          drop-connect), take F.cross_entropy with label smoothing, run our backward, and read the gradients
          from the leaves and the updated BN statistics from net.named_buffers() inside the block; then
          optimizer.update and apply_updates(backend, params, updates, lr). It must equal the library's
          step, two steps in a row.""", builds="the training step",
          answer=("tinyeffnet.training.step:gradients", "tinyeffnet.training.step:make_train_step",
                  "tinyeffnet.training.step:forward_loss"))
def check_train_step(train_step):
    from tinyeffnet.training import step as steps
    py = python()
    for seed, smoothing in ((1103, 0.1), (1104, 0.0)):
        net, optimizer, state, images, labels, key, lr, smoothing = _tiny_training_case(seed, smoothing)
        library = steps.make_train_step(net, optimizer, steps.StepOptions(label_smoothing=smoothing))
        mine = state
        for step in (1, 2):
            label = f"step {step} (label smoothing {smoothing}, lr {lr:.3f})"
            net.eval()  # as a lesson may leave it: the step must put it in training mode
            got = given(train_step(net, optimizer, _copy(mine), images, labels, key, lr, smoothing))
            trained = net.training
            if not isinstance(got, tuple) or len(got) != 2:
                raise Wrong("return two things: (the new state, the loss)")
            got, loss = got
            want, metrics = library(mine, images, labels, key, lr)
            if not hasattr(loss, "item") and not isinstance(loss, float):
                raise Wrong(f"{label}: the loss must be a Tensor (or a float), yours is {type(loss).__name__}")
            if not close(number(loss), py.to_flat(metrics["loss"])[0], 1e-9):
                raise Wrong(f"{label}: the library's step has loss {py.to_flat(metrics['loss'])[0]:.8f}, yours "
                            f"{number(loss):.8f}" + ("; put the network in training mode (net.train()): in eval mode "
                                                      "BN uses its moving statistics and dropout is off"
                                                      if not trained else ""))
            _compare_states(label, got, want, mine)
            mine = got
    return ("two steps in a row equal to the library's (loss, params, BN statistics, momentum) on a tiny B0 with "
            "dropout and drop-connect, from a state unlike the network's own, with and without smoothing")
