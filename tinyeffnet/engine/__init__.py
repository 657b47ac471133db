"""The engine: a NumPy-free Tensor with reverse-mode autograd on a pluggable backend.

    tensor.py      Tensor: a backend array, requires_grad, .grad; operators broadcast
    autograd.py    Function (forward/backward with a context), the tape, backward()
    ops.py         every differentiable op as a Function, in backend primitives only
    functional.py  the network functions the layers are made of (conv2d, batch norm, ...)
    gradcheck.py   central finite differences against our gradients
"""
from .autograd import Function, backward, is_grad_enabled, no_grad
from .tensor import Tensor
from . import functional

__all__ = ["Tensor", "Function", "backward", "no_grad", "is_grad_enabled", "functional"]
