"""`python -m tinyeffnet.probe --checkpoint PATH [PATH ...]`: what each block of a trained
network does to a batch of eval images (output scale, SE gates, BN statistics).

See tinyeffnet/experiments/block_probe.py for what each column means. Give several
checkpoints of one run (say steps 20, 40, ... of a run with --checkpoint-every 20) to
follow the blocks over training, or the same step of two variants to compare them.
"""
import sys

from data_tools import DataError

from ._cli import ArgumentParser, run_command
from ._files import dumps
from .experiments.block_probe import format_rows, probe_checkpoint
from .training.checkpoint import CheckpointError


def main(argv=None):
    p = ArgumentParser(prog="python -m tinyeffnet.probe", description=__doc__.split("\n\n")[0])
    p.add_checkpoint_options(json_help="print one JSON object per checkpoint", many=True)
    p.add_argument("--batch-size", type=int, default=256,
                   help="eval images probed, in one batch (default 256; the whole eval split if fewer)")
    p.add_argument("--mode", default="train", choices=("train", "eval"),
                   help="BN on the batch's statistics as in training (default) or on the moving ones")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch-size must be at least 1, got {args.batch_size}")
    for path in args.checkpoint:
        try:
            rows, top1, meta = probe_checkpoint(path, args.data, args.backend, args.batch_size, args.mode == "train")
        except (ValueError, DataError, CheckpointError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if args.json:
            print(dumps(dict(checkpoint=meta["path"], variant=meta["variant"], step=meta.get("step"),
                             mode=args.mode, images=args.batch_size, top1=top1, blocks=rows)))
        else:
            print(f"{meta['variant']} {meta['path']} (step {meta.get('step')}), BN {args.mode} mode, "
                  f"{args.batch_size} eval images: top-1 {top1:.4f}\n\n{format_rows(rows)}\n")
    return 0


if __name__ == "__main__":
    run_command(main)
