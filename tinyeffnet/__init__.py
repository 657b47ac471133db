"""tinyeffnet: EfficientNet-B0 and the paper's SE variants on a NumPy-free autograd.

The same layer code runs on a pure-Python backend (to read and step through) and on a
JAX backend (to train on accelerators). In Python (tinyeffnet/api.py):

    net = tinyeffnet.create_model("seend@all", num_classes=10)   # a variant, or b0 ... b7
    net = tinyeffnet.load("runs/base-b0-...")                     # a run, a checkpoint, converted weights
    predictions = tinyeffnet.classify(net, ["shoe.png"], top=3)

The package, from the bottom up:

    engine/       Tensor, autograd, the differentiable ops, functional, gradcheck
    nn/           Module and the layers
    model/        EfficientNet B0-B7 and the paper's SE variants, built from a name
    training/     config, runtime, step, optimizer, schedule, checkpoint, metrics, loop
    experiments/  the SE ablation (the paper's Table II) and its report
    plotting/     charts drawn with Pillow (training curves, Table II, the lessons' figures)
    benchmarks/   what `python -m tinyeffnet.bench` measures
    weights/      published weights (timm, torchvision) in and out; starting from other weights
    inference.py  classifying images with a network (what predict and classify run)
    api.py        create_model, load, classify

and the commands, one module each: `python -m tinyeffnet.train | evaluate | predict |
summary | ablation | bench | convert | probe`. Library packages never import a command
module.
"""
from .engine import Function, Tensor, backward, functional, is_grad_enabled, no_grad

_API = ("create_model", "load", "classify", "ModelSpec")
__all__ = ["Tensor", "Function", "backward", "no_grad", "is_grad_enabled", "functional", *_API]
__version__ = "0.1.0"


def __getattr__(name):
    # The API is imported on first use: `import tinyeffnet` stays as light as the engine.
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'tinyeffnet' has no attribute {name!r}")
