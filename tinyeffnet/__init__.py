"""tinyeffnet: EfficientNet-B0 and the paper's SE variants on a NumPy-free autograd.

The same layer code runs on a pure-Python backend (to read and step through) and on a
JAX backend (to train on accelerators); see README.md and lessons/.
"""
from .autograd import backward, no_grad, is_grad_enabled, Function
from .tensor import Tensor
from . import functional

__all__ = ["Tensor", "Function", "backward", "no_grad", "is_grad_enabled", "functional"]
__version__ = "0.1.0"
