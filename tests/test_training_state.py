"""The training state's one mapping to checkpoint tensor names (both optimizers' states), and
the optimizer's one interface: our Nesterov SGD and optax's chain make the same update."""
import pytest

from backends import get_backend
from tinyeffnet.training.checkpoint import CheckpointError
from tinyeffnet.training.optimizer import NesterovSGD, apply_updates
from tinyeffnet.training.state import model_weights, state_from_tensors, state_to_tensors

PY = get_backend("python")
NAMES = ["conv.weight", "bn.gamma"]


def _params(values=((1.0, -2.0), (1.0, 0.5))):
    return {n: PY.from_flat(list(v), (2,)) for n, v in zip(NAMES, values)}


def test_python_state_round_trips_through_checkpoint_names():
    params = _params()
    opt = NesterovSGD(PY, NAMES)
    state = dict(params=params, buffers={"bn.moving_var": PY.from_flat([1.0], (1,))}, opt_state=opt.init(params),
                 ema=dict(params=dict(params), buffers={"bn.moving_var": PY.from_flat([2.0], (1,))}))
    tensors = state_to_tensors(state)
    assert set(tensors) == {"params/conv.weight", "params/bn.gamma", "buffers/bn.moving_var",
                            "opt/trace/conv.weight", "opt/trace/bn.gamma", "ema/params/conv.weight",
                            "ema/params/bn.gamma", "ema/buffers/bn.moving_var"}
    back = state_from_tensors(state, tensors)
    assert state_to_tensors(back) == tensors
    assert PY.to_flat(model_weights(tensors, ema=True)["bn.moving_var"]) == [2.0]
    assert set(model_weights(tensors)) == {"conv.weight", "bn.gamma", "bn.moving_var"}


def test_a_missing_tensor_is_one_clear_error():
    params = _params()
    state = dict(params=params, buffers={}, opt_state=NesterovSGD(PY, NAMES).init(params))
    tensors = state_to_tensors(state)
    del tensors["opt/trace/bn.gamma"]
    with pytest.raises(CheckpointError, match=r"x.safetensors lacks 1 tensors .*opt/trace/bn.gamma"):
        state_from_tensors(state, tensors, "x.safetensors")


def test_optax_state_round_trips_and_matches_our_optimizer():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from tinyeffnet.training.optimizer import optax_nesterov_sgd
    jb = get_backend("jax")
    grads = ((0.5, 0.25), (0.5, -1.0))
    ours, ours_state = _params(), None
    sgd = NesterovSGD(PY, NAMES, momentum=0.9, weight_decay=1e-4)
    ours_state = sgd.init(ours)
    theirs = {n: jnp.asarray(PY.to_flat(p)) for n, p in _params().items()}
    chain = optax_nesterov_sgd(NAMES, momentum=0.9, weight_decay=1e-4)
    chain_state = chain.init(theirs)
    for _ in range(3):
        updates, ours_state = sgd.update(_params(grads), ours_state, ours)
        ours = apply_updates(PY, ours, updates, 0.1)
        updates, chain_state = chain.update({n: jnp.asarray(g) for n, g in zip(NAMES, grads)}, chain_state, theirs)
        theirs = apply_updates(jb, theirs, updates, 0.1)
    for n in NAMES:
        assert max(abs(a - b) for a, b in zip(PY.to_flat(ours[n]), theirs[n].tolist())) < 1e-6, n
    # optax's state is a tuple of named tuples: its tree path names the tensors.
    state = dict(params=theirs, buffers={}, opt_state=chain_state)
    tensors = state_to_tensors(state)
    assert "opt/1/trace/conv.weight" in tensors
    back = state_from_tensors(state, tensors)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(state)


def test_non_finite_logits_never_count_as_correct():
    from tinyeffnet.training.metrics import topk_correct
    nan, inf = float("nan"), float("inf")
    logits = PY.from_flat([nan] * 3 + [1.0, nan, 0.0] + [inf, 0.0, 0.0] + [3.0, 1.0, 2.0], (4, 3))
    labels = PY.from_flat([0, 0, 0, 0], (4,), "int32")
    correct = topk_correct(PY, logits, labels, (1, 2))
    assert PY.to_flat(correct[1]) == [0.0, 0.0, 0.0, 1.0]
    assert PY.to_flat(correct[2]) == [0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("group", ["params", "buffers", "opt_state", "ema"])
def test_the_steps_finiteness_flag_covers_every_array_it_writes(group):
    from tinyeffnet.training.metrics import all_finite
    params = _params()
    state = dict(params=params, buffers={"bn.moving_var": PY.from_flat([1.0, 2.0], (2,))},
                 opt_state=NesterovSGD(PY, NAMES).init(params),
                 ema=dict(params=dict(params), buffers={"bn.moving_var": PY.from_flat([1.0, 2.0], (2,))}))
    assert PY.to_flat(all_finite(PY, list(state_to_tensors(state).values()))) == [1.0]
    names = [n for n in state_to_tensors(state) if n.split("/")[0] == {"opt_state": "opt"}.get(group, group)]
    for bad in (float("nan"), float("inf")):
        tensors = state_to_tensors(state)
        tensors[names[0]] = PY.from_flat([bad, 1.0], (2,))
        assert PY.to_flat(all_finite(PY, list(tensors.values()))) == [0.0], (names[0], bad)
    huge = state_to_tensors(state)
    huge[names[0]] = PY.from_flat([1e308, 1e308], (2,))  # finite values whose sum overflows
    assert PY.to_flat(all_finite(PY, list(huge.values()))) == [1.0]


def test_global_norm_and_clipping():
    from tinyeffnet.training.metrics import global_norm
    from tinyeffnet.training.step import clip_by_global_norm
    grads = {"a": PY.from_flat([3.0, 0.0], (2,)), "b": PY.from_flat([4.0, 0.0, 0.0, 12.0], (2, 2))}
    norm = global_norm(PY, list(grads.values()))
    assert PY.to_flat(norm) == [13.0]
    same = clip_by_global_norm(PY, grads, norm, 13.0)  # at the limit: unchanged
    assert {n: PY.to_flat(g) for n, g in same.items()} == {n: PY.to_flat(g) for n, g in grads.items()}
    clipped = clip_by_global_norm(PY, grads, norm, 6.5)  # half the norm: every gradient halved
    assert PY.to_flat(clipped["a"]) == [1.5, 0.0] and PY.to_flat(clipped["b"]) == [2.0, 0.0, 0.0, 6.0]
    assert PY.to_flat(global_norm(PY, list(clipped.values()))) == [6.5]


def test_train_step_reports_the_gradient_norm_and_clips_to_it():
    from tinyeffnet.model import build_model
    from tinyeffnet.training.metrics import global_norm
    from tinyeffnet.training.step import StepOptions, gradients, init_state, make_train_step
    net = build_model("seend@all", num_classes=3, backend="python", width=0.1, depth=0.1, seed=0)
    opt = NesterovSGD(PY, [n for n, _ in net.named_parameters()], momentum=0.0, weight_decay=0.0)
    images = PY.normal(PY.key(1), (2, 16, 16, 3), "float64")
    labels = PY.from_flat([0, 2], (2,), "int32")
    state = init_state(net, opt)
    _, _, grads, _ = gradients(net, state["params"], state["buffers"], images, labels, PY.key(0))
    norm = PY.to_flat(global_norm(PY, list(grads.values())))[0]
    assert norm > 0
    for clip, scale in ((0.0, 1.0), (10 * norm, 1.0), (norm / 4, 0.25)):
        step = make_train_step(net, opt, StepOptions(clip_grad_norm=clip))
        new, metrics = step(init_state(net, opt), images, labels, PY.key(0), 1.0)
        assert abs(PY.to_flat(metrics["grad_norm"])[0] - norm) < 1e-12 * norm  # before clipping
        for name in ("stem_conv.weight", "fc.weight"):
            moved = [p - q for p, q in zip(PY.to_flat(state["params"][name]), PY.to_flat(new["params"][name]))]
            want = [scale * g for g in PY.to_flat(grads[name])]  # lr 1, no momentum, no decay: p - scale * g
            assert max(abs(m - w) for m, w in zip(moved, want)) < 1e-12 * max(1.0, norm), (clip, name)
