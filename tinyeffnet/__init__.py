"""tinyeffnet: EfficientNet-B0 and the paper's SE variants on a NumPy-free autograd.

The same layer code runs on a pure-Python backend (to read and step through) and on a
JAX backend (to train on accelerators). The package, from the bottom up:

    engine/       Tensor, autograd, the differentiable ops, functional, gradcheck
    nn/           Module and the layers
    model/        EfficientNet B0-B7 and the paper's SE variants, built from a name
    training/     config, runtime, step, optimizer, schedule, checkpoint, metrics, loop
    experiments/  the SE ablation (the paper's Table II) and its report
    plotting/     charts drawn with Pillow (training curves, Table II, the lessons' figures)
    benchmarks/   what `python -m tinyeffnet.bench` measures
    weights/      published weights (timm, torchvision) in and out; starting from other weights

and the commands, one module each: `python -m tinyeffnet.train | evaluate | predict |
summary | ablation | bench | convert`. Library packages never import a command module.
"""
from .engine import Function, Tensor, backward, functional, is_grad_enabled, no_grad

__all__ = ["Tensor", "Function", "backward", "no_grad", "is_grad_enabled", "functional"]
__version__ = "0.1.0"
