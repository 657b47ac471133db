"""Start a network from weights of a related one: every tensor whose name and shape fit.

What fits is taken; what does not is left as the network's own (fresh) initialisation and
listed, and so is what the weights hold that the network has no place for. One rule for
`train --init-from` (a new class count re-initialises the classifier) and for
`convert --variant` (a variant's moved SE layers get fresh weights, removed ones drop).
"""
from typing import NamedTuple


class Transfer(NamedTuple):
    taken: list          # names loaded from the weights
    fresh: list          # (name, shape here, shape in the weights or None): kept as initialised
    unused: list         # names of the weights that the network has no place for

    def describe(self):
        """One line: how many tensors were taken, which were initialised afresh, which unused."""
        total = len(self.taken) + len(self.fresh)
        text = f"loaded {len(self.taken)} of {total} tensors"
        if self.fresh:
            text += f"; initialised afresh {len(self.fresh)}: " + _listed(
                f"{name} {_shape(here)} ({'not in the weights' if there is None else 'weights: ' + _shape(there)})"
                for name, here, there in self.fresh)
        if self.unused:
            text += f"; not used {len(self.unused)}: " + _listed(self.unused)
        return text


def match(wanted, available):
    """A Transfer from {name: shape} of the network and {name: shape} of the weights."""
    taken, fresh = [], []
    for name, shape in wanted.items():
        there = available.get(name)
        if there is not None and tuple(there) == tuple(shape):
            taken.append(name)
        else:
            fresh.append((name, tuple(shape), None if there is None else tuple(there)))
    return Transfer(taken, fresh, [name for name in available if name not in wanted])


def _shape(shape):
    return "x".join(str(d) for d in shape) or "scalar"


def _listed(items, limit=4):
    items = list(items)
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def load_matching(net, arrays):
    """Put every array of {name: backend array} whose name and shape fit into `net` (cast to
    the network's dtype); returns the Transfer. The rest of `net` keeps its values."""
    own = net.state_dict()
    backend = next(iter(own.values())).backend
    transfer = match({n: t.shape for n, t in own.items()}, {n: tuple(backend.shape(a)) for n, a in arrays.items()})
    for name in transfer.taken:
        tensor, value = own[name], arrays[name]
        if backend.dtype(value) != tensor.dtype:
            value = backend.astype(value, tensor.dtype)
        tensor.data = value
    return transfer
