"""What every command shares: an argument parser whose errors are one line and exit 2, the
flags of the commands that read a checkpoint, and how a command starts."""
import argparse
import os
import sys

from backends.host_memory import run_with_huge_pages

from .training.runtime import training_backends


SIGPIPE_STATUS = 141  # 128 + SIGPIPE: what a shell reports for `yes | head` under `set -o pipefail`


def run_command(main):
    """A command's `__main__`: restart with huge pages where they help (backends/host_memory.py),
    then exit with main()'s status. When whoever reads stdout stops reading (`predict DIR |
    head`), the command ends quietly with status 141, as a command killed by SIGPIPE does:
    no traceback, and no second error when Python flushes stdout on the way out."""
    run_with_huge_pages()
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        status = SIGPIPE_STATUS
    sys.exit(status)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line `error: ...` and exit status 2 (no usage block)."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)

    def add_checkpoint_options(self, json_help, many=False, data=True):
        """--checkpoint (one, or `many`), --data (with `data`), --backend and --json: the flags
        of the commands that read a checkpoint (evaluate, predict, probe)."""
        if many:
            self.add_argument("--checkpoint", required=True, nargs="+", help="checkpoint files or work directories "
                              "(a work directory's best checkpoint)")
        else:
            self.add_argument("--checkpoint", required=True, help="a checkpoint file or a work directory (its best "
                              "checkpoint)")
        if data:
            self.add_argument("--data", default="default", help="dataset spec (default: the embedded Fashion-MNIST "
                              "subset)")
        backends = training_backends()
        self.add_argument("--backend", default="jax", choices=backends,
                          help=f"{' or '.join(backends)} (default jax)")
        self.add_argument("--json", action="store_true", help=json_help)

    def add_weights_choice(self):
        """--ema / --raw: which weights of a checkpoint to use. Neither: the EMA weights where the
        checkpoint holds them (what a run with --ema-decay reports), else the raw ones. Read back
        with weights_choice(args)."""
        group = self.add_mutually_exclusive_group()
        group.add_argument("--ema", dest="use_ema", action="store_const", const=True, default=None,
                           help="the EMA weights (default where the checkpoint has them)")
        group.add_argument("--raw", dest="use_ema", action="store_const", const=False,
                           help="the raw weights, not their moving average")


def weights_choice(args):
    """True (EMA), False (raw) or None (the checkpoint's own: EMA where it has them)."""
    return args.use_ema
