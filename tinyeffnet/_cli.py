"""What every command shares: an argument parser whose errors are one line and exit 2."""
import argparse
import sys


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line `error: ...` and exit status 2 (no usage block)."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)

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
