"""The PyTorch peer of `python -m tinyeffnet.bench --backend jax --variant base`: the same
training step in PyTorch, to run back to back with ours on the same idle machine.

Same work as our bench: EfficientNet-B0 (timm's `tf_efficientnet_b0`: TensorFlow's "same"
padding, as tinyeffnet; torchvision's `efficientnet_b0` when timm is missing), float32,
synthetic batch, SGD with Nesterov momentum 0.9, learning rate 0.05, weight decay 5e-5,
cross-entropy with label smoothing 0.1. PyTorch eager, channels_last, its default threads.
Three warm-up steps, then `--steps` timed steps. Prints one JSON line, with the process's
peak resident memory (`peak_rss_bytes`, as `/usr/bin/time -v` reports it; our bench's
field of the same name).

PyTorch is no dependency of tinyeffnet; give it a virtualenv of its own:

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch torchvision timm
    /tmp/peers/bin/python tinyeffnet/benchmarks/torch_peer.py --image-size 32 --batch-size 128 --steps 10

This file is a standalone script: nothing in tinyeffnet imports it.
"""
import argparse
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F


def make_model(num_classes):
    try:
        import timm
        return "timm tf_efficientnet_b0", timm.create_model("tf_efficientnet_b0", num_classes=num_classes)
    except ImportError:
        import torchvision
        return "torchvision efficientnet_b0", torchvision.models.efficientnet_b0(num_classes=num_classes)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    torch.manual_seed(0)
    name, model = make_model(args.num_classes)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-5)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size).to(memory_format=torch.channels_last)
    y = torch.randint(0, args.num_classes, (args.batch_size,))

    def step():
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - t0
    print(json.dumps(dict(peer=f"{name}, PyTorch {torch.__version__} eager float32 CPU", image_size=args.image_size,
                          batch_size=args.batch_size, num_classes=args.num_classes, steps=args.steps,
                          threads=torch.get_num_threads(),
                          img_per_s=round(args.batch_size * args.steps / seconds, 1),
                          peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                          * (1 if sys.platform == "darwin" else 1024))))


if __name__ == "__main__":
    main()
