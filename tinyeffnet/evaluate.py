"""`python -m tinyeffnet.evaluate --checkpoint PATH --data SPEC [--json]`: top-1 and top-5.

PATH is a checkpoint file or a work directory (its best checkpoint, else its latest). The
whole eval split is used (Fashion-MNIST: the official t10k test set). Any backend can
evaluate any checkpoint: weights are stored as portable safetensors.
"""
import argparse
import json
import sys

from data_tools import DataError, Loader, open_dataset

from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from .efficientnet import build_model
from .runtime import make_runtime


def load_model(path, backend="python", use_ema=False):
    """(model in eval mode, training state dict) from a checkpoint file or work directory."""
    from backends import get_backend
    path = resolve_checkpoint(path)
    b = get_backend(backend)
    tensors, state = load_checkpoint(path, b)
    for key in ("variant", "model", "num_classes"):
        if key not in state:
            raise CheckpointError(f"{path} has no {key!r} in its metadata: not a tinyeffnet training checkpoint")
    net = build_model(state["variant"], state["model"], state["num_classes"], backend=backend,
                      dtype="float64" if backend == "python" else "float32",
                      width=state.get("width"), depth=state.get("depth"))
    prefix = "ema/" if use_ema else ""
    if use_ema and not any(k.startswith("ema/") for k in tensors):
        raise CheckpointError(f"{path} holds no EMA weights (the run had --ema-decay 0): drop --ema")
    weights = {k[len(prefix) + len("params/"):]: v for k, v in tensors.items() if k.startswith(prefix + "params/")}
    weights.update({k[len(prefix) + len("buffers/"):]: v for k, v in tensors.items()
                    if k.startswith(prefix + "buffers/")})
    try:
        net.load_state_dict(weights)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path} does not fit variant {state['variant']} {state['model']}: {e}") from None
    return net.eval(), dict(state, path=path)


def evaluate_checkpoint(path, data, backend="jax", batch_size=256, workers=0, use_ema=False, limit=0):
    from . import train
    runtime = make_runtime(backend)
    net, state = load_model(path, backend, use_ema)
    image_size = int(state.get("image_size") or net.default_image_size)
    dataset = open_dataset(data, "eval", image_size)
    if dataset.num_classes != net.num_classes:
        raise DataError(f"{data} has {dataset.num_classes} classes but the checkpoint {state['path']} was trained "
                        f"for {net.num_classes}: evaluate it on the data it was trained on")
    batch_size -= batch_size % runtime.device_count
    loader = Loader(dataset, max(batch_size, runtime.device_count), workers=workers)
    params = {n: p.data for n, p in net.named_parameters()}
    buffers = {n: b.data for n, b in net.named_buffers()}
    if hasattr(runtime, "put_state"):
        params, buffers = runtime.put_state((params, buffers))
    eval_step = runtime.steps.make_eval_step(net, runtime.compute_dtype, runtime.mesh)
    try:
        result = train.evaluate(runtime, eval_step, params, buffers, loader, limit)
    finally:
        loader.close()
    return dict(result, checkpoint=state["path"], variant=state["variant"], model=state["model"], data=data,
                ema=use_ema)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyeffnet.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint file or a work directory")
    p.add_argument("--data", default="default", help="dataset spec (default: the embedded Fashion-MNIST subset)")
    p.add_argument("--backend", default="jax", help="jax or python (default jax)")
    p.add_argument("--batch-size", type=int, default=256, help="images per evaluation batch (default 256)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    p.add_argument("--ema", action="store_true", help="evaluate the EMA weights instead of the raw ones")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N images only (default 0: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys top1, top5, images, ...)")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    try:
        result = evaluate_checkpoint(args.checkpoint, args.data, args.backend, args.batch_size, args.workers,
                                     args.ema, args.limit)
    except (ValueError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['variant']} {result['model']} ({result['checkpoint']}) on {args.data}: "
              f"top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}, loss {result['loss']:.4f}, "
              f"{result['images']} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
