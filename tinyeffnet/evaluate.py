"""`python -m tinyeffnet.evaluate --checkpoint PATH --data SPEC [--json]`: top-1 and top-5.

PATH is a checkpoint file or a work directory (its best checkpoint, else its latest). The
whole eval split is used (Fashion-MNIST: the official t10k test set). Photos are cropped
and resized as the checkpoint records (a converted published model: its library's eval
view, so the figure is the one its library publishes; a network trained here: TensorFlow's
center crop). Any backend can evaluate any checkpoint: weights are stored as portable
safetensors. Bad input (a checkpoint or dataset that does not load) is one line, exit 2.
"""
import sys

from data_tools import DataError

from ._cli import ArgumentParser, run_command, weights_choice
from ._files import dumps
from .training.checkpoint import CheckpointError
from .training.evaluation import evaluate_checkpoint


def main(argv=None):
    p = ArgumentParser(prog="python -m tinyeffnet.evaluate", description=__doc__.split("\n\n")[0])
    p.add_checkpoint_options(json_help="print one JSON object (keys top1, top5, images, ...)")
    p.add_argument("--batch-size", type=int, default=256, help="images per evaluation batch (default 256)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    p.add_weights_choice()
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N images only (default 0: all)")
    args = p.parse_args(argv)
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0),
                             ("--limit", args.limit, 0)):
        if value < low:
            p.error(f"{flag} must be at least {low}, got {value}")
    try:
        result = evaluate_checkpoint(args.checkpoint, args.data, args.backend, args.batch_size, args.workers,
                                     weights_choice(args), args.limit)
    except (ValueError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(dumps(result))
    else:
        print(f"{result['variant']} {result['model']} ({result['checkpoint']}) on {args.data}: "
              f"top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}, loss {result['loss']:.4f}, "
              f"{result['images']} images")
    return 0


if __name__ == "__main__":
    run_command(main)
