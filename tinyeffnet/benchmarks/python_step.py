"""One training step of a model on the pure-Python backend: forward and our backward."""
from backends import get_backend

from ..engine import Tensor, functional as F
from ..model import build_model
from .timing import seconds_per_call


def bench_model_python(variant, model, image_size, batch_size, num_classes, min_seconds):
    b = get_backend("python")
    net = build_model(variant, model, num_classes, backend=b).train()
    x = Tensor.uniform(1, (batch_size, image_size, image_size, 3), -1.0, 1.0, backend=b)
    labels = [i % num_classes for i in range(batch_size)]

    def step():
        net.zero_grad()
        F.cross_entropy(net(x, key=b.key(2)), labels, 0.1).backward()

    seconds = seconds_per_call(step, min_seconds, min_runs=1)
    return dict(backend="python", variant=net.variant, model=net.model_name, image_size=image_size,
                batch_size=batch_size, seconds_per_step=seconds, img_per_s=batch_size / seconds)
