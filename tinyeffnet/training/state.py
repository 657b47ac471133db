"""The training state and its names in a checkpoint: the one place that maps one to the other.

    state                                   checkpoint tensor names
    {"params":    {name: array},            params/<name>
     "buffers":   {name: array},            buffers/<name>        (BN moving statistics)
     "opt_state": optimizer state,          opt/<path>            e.g. opt/1/trace/<name>
     "ema": {"params": ..., "buffers": ...}} ema/params/<name>, ema/buffers/<name>

The optimizer state is any tree of dicts, tuples and named tuples (ours or optax's): its
path joins the dict keys, tuple positions and field names with "/". The trainer, evaluate,
predict and the ablation all read checkpoints through these functions.
"""
from backends import get_backend

from ..model import ModelSpec, build_model
from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint

GROUPS = ("params", "buffers")


def _is_namedtuple(x):
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _children(node):
    """[(path part, child)] of a tree node, or None for a leaf."""
    if isinstance(node, dict):
        return [(str(k), v) for k, v in node.items()]
    if _is_namedtuple(node):
        return list(zip(node._fields, node))
    if isinstance(node, (tuple, list)):
        return [(str(i), v) for i, v in enumerate(node)]
    return None


def _flatten(node, prefix, out):
    children = _children(node)
    if children is None:
        if node is not None:
            out[prefix] = node
        return
    for part, child in children:
        _flatten(child, f"{prefix}/{part}", out)


def _rebuild(template, prefix, tensors, missing):
    children = _children(template)
    if children is None:
        if template is None:
            return None
        if prefix not in tensors:
            missing.append(prefix)
            return template
        return tensors[prefix]
    values = [_rebuild(child, f"{prefix}/{part}", tensors, missing) for part, child in children]
    if isinstance(template, dict):
        return dict(zip(template, values))
    if _is_namedtuple(template):
        return type(template)(*values)
    return type(template)(values)


def _layout(state):
    """The state as one tree whose paths are the checkpoint names."""
    tree = {g: state[g] for g in GROUPS}
    tree["opt"] = state["opt_state"]
    if "ema" in state:
        tree["ema"] = state["ema"]
    return tree


def state_to_tensors(state, to_host=lambda a: a):
    """{checkpoint name: array} of a training state; `to_host` picks this process's copy."""
    out = {}
    for group, subtree in _layout(state).items():
        _flatten(subtree, group, out)
    return {name: to_host(a) for name, a in out.items()}


def state_from_tensors(template, tensors, path="the checkpoint"):
    """A training state shaped like `template`, its arrays taken from `tensors`."""
    missing = []
    layout = {group: _rebuild(subtree, group, tensors, missing) for group, subtree in _layout(template).items()}
    if missing:
        raise CheckpointError(f"{path} lacks {len(missing)} tensors of this run's state (e.g. {missing[0]}): it "
                              "was written by another variant, model size, backend, optimizer or --ema-decay "
                              "setting")
    state = {g: layout[g] for g in GROUPS}
    state["opt_state"] = layout["opt"]
    if "ema" in layout:
        state["ema"] = layout["ema"]
    return state


def model_weights(tensors, ema=False):
    """{parameter or buffer name: value} of a network in a checkpoint's {name: value} (arrays or
    records alike), as Module.load_state_dict takes it: its EMA weights with `ema`."""
    prefix = "ema/" if ema else ""
    out = {}
    for group in GROUPS:
        head = f"{prefix}{group}/"
        out.update({name[len(head):]: a for name, a in tensors.items() if name.startswith(head)})
    return out


def model_tensors(weights, buffer_names):
    """{checkpoint name: value} of a network's {name: value}, in its order; `buffer_names` says
    which are buffers (BN moving statistics), the rest are parameters. model_weights reads
    them back."""
    return {f"{'buffers' if n in buffer_names else 'params'}/{n}": v for n, v in weights.items()}


def holds_model(names):
    """True when a checkpoint with these tensor names holds a network's weights."""
    return any(name.startswith("params/") for name in names)


def holds_ema(names):
    """True when a checkpoint with these tensor names holds EMA weights."""
    return any(name.startswith("ema/") for name in names)


def load_model(path, backend="python", use_ema=None):
    """(model in eval mode, checkpoint metadata) from a checkpoint file or work directory.

    The network is the one the checkpoint's ModelSpec records (`net.spec`, with the
    resolution, normalization and class names it was fed with). `use_ema`: True the EMA
    weights, False the raw ones, None the checkpoint's own choice: the EMA weights where it
    holds them (a run with --ema-decay evaluates and reports those, as the original
    EfficientNet training did), else the raw ones. meta["ema"] says which."""
    path = resolve_checkpoint(path)
    b = get_backend(backend)
    tensors, meta = load_checkpoint(path, b)
    try:
        spec = ModelSpec.from_meta(meta, path)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    has_ema = holds_ema(tensors)
    if use_ema and not has_ema:
        raise CheckpointError(f"{path} holds no EMA weights (the run had --ema-decay 0): drop --ema")
    use_ema = has_ema if use_ema is None else use_ema
    net = build_model(spec, backend=b)
    try:
        net.load_state_dict(model_weights(tensors, use_ema))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path} does not fit variant {spec.variant} {spec.model}: {e}") from None
    return net.eval(), dict(meta, path=path, ema=use_ema)
