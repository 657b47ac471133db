"""`Module`: a tree of layers with named parameters and buffers.

Names are the attribute path, e.g. `blocks.3.se.reduce.weight`; they are the keys of
`state_dict()` and of checkpoints, so renaming an attribute is a format change.
Parameters are Tensors with requires_grad=True; buffers (batch-norm moving statistics)
are Tensors that training updates without gradients.
"""
import contextlib

from ..engine.tensor import Tensor


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "measuring", False)

    def __setattr__(self, name, value):
        if isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        elif isinstance(value, Tensor) and value.requires_grad:
            self._parameters[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):  # only called when normal lookup fails
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table, {})
            if name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def register_buffer(self, name, tensor):
        self._buffers[name] = tensor

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        x = args[0] if args else None
        own = self.backend
        if isinstance(x, Tensor) and own is not None and x.backend is not own:
            raise ValueError(f"{type(self).__name__}: its weights are on the {own.name} backend, its input on "
                             f"{x.backend.name}; make every tensor and layer with the same backend=")
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self):
        for path, module in self.named_modules():
            for name, p in module._parameters.items():
                yield (f"{path}.{name}" if path else name), p

    def named_buffers(self):
        for path, module in self.named_modules():
            for name, b in module._buffers.items():
                yield (f"{path}.{name}" if path else name), b

    @property
    def backend(self):
        """The backend this module's tensors live on (None for a module without any)."""
        for _, t in self.named_parameters():
            return t.backend
        for _, t in self.named_buffers():
            return t.backend
        return None

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    def num_buffer_values(self):
        return sum(b.size for _, b in self.named_buffers())

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # ------------------------------------------------------------------ modes
    def train(self, mode=True):
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
            object.__setattr__(module, "measuring", False)
        return self

    def eval(self):
        return self.train(False)

    def measure_statistics(self):
        """Eval mode, except that the layers that keep statistics of their inputs (batch norm)
        normalise with this batch's statistics and replace theirs by them: the forward pass
        of precise BN (tinyeffnet.training.step.make_bn_statistics_step). No dropout, no
        drop-connect: the statistics are those of the network as it runs at eval time."""
        self.eval()
        for _, module in self.named_modules():
            object.__setattr__(module, "measuring", True)
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """name -> Tensor for every parameter, then every buffer, in a stable order."""
        out = dict(self.named_parameters())
        out.update(self.named_buffers())
        return out

    def arrays(self):
        """{"params": {name: array}, "buffers": {name: array}}: the module's values as a step
        function takes them (and as a training state holds them)."""
        return dict(params={n: p.data for n, p in self.named_parameters()},
                    buffers={n: b.data for n, b in self.named_buffers()})

    def load_state_dict(self, state, strict=True):
        """Copy arrays (or Tensors) from `state` into this module, checking names and shapes."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: {len(missing)} missing ({', '.join(missing[:3])}"
                           f"{'...' if len(missing) > 3 else ''}), {len(unexpected)} unexpected "
                           f"({', '.join(unexpected[:3])}{'...' if len(unexpected) > 3 else ''}); "
                           "is this a checkpoint of another variant or model size?")
        for name, tensor in own.items():
            if name not in state:
                continue
            value = state[name]
            data = value.data if isinstance(value, Tensor) else value
            shape = tuple(tensor.backend.shape(data))
            if shape != tensor.shape:
                raise ValueError(f"load_state_dict: {name} has shape {shape} in the state but "
                                 f"{tensor.shape} in the model")
            tensor.data = data

    @contextlib.contextmanager
    def bind(self, params=None, buffers=None):
        """Run the module with given arrays in its parameter and buffer slots.

        Yields {name: leaf Tensor} for the parameters, whose .grad a backward fills: a fresh
        leaf for each array given, or the Tensor itself where a Tensor is given.
        On exit the module's own arrays are put back, so a pure function (as jax.jit
        needs) can read the updated buffers inside the block and return them.
        """
        saved = {}
        leaves = {}
        try:
            for path, module in self.named_modules():
                for name, p in list(module._parameters.items()):
                    full = f"{path}.{name}" if path else name
                    if params is not None and full in params:
                        saved[(id(module), "p", name)] = (module, p)
                        value = params[full]
                        leaf = value if isinstance(value, Tensor) else Tensor(value, p.backend, requires_grad=True)
                        module._parameters[name] = leaf
                        leaves[full] = leaf
                for name, b in list(module._buffers.items()):
                    full = f"{path}.{name}" if path else name
                    if buffers is not None and full in buffers:
                        saved[(id(module), "b", name)] = (module, b)
                        module._buffers[name] = Tensor(buffers[full], b.backend)
            yield leaves
        finally:
            for (_, kind, name), (module, original) in saved.items():
                (module._parameters if kind == "p" else module._buffers)[name] = original


class ModuleList(Module):
    """Modules named 0, 1, 2, ... in order."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self._modules[str(len(self._modules))] = module

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]
