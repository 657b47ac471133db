"""`python -m tinyeffnet.train --backend jax --variant base`: train, evaluate, checkpoint.

Every value is a flag (`--help` lists them with each preset's value); the loop itself is
tinyeffnet.training.loop.train.
"""
import sys

from ._cli import run_command
from .model import canonical_variant
from .training.config import build_parser, config_from_args
from .training.loop import run


def main(argv=None):
    parser = build_parser(description=__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args).resolved().check()
        canonical_variant(cfg.variant)
    except ValueError as e:  # one line, like every other error of the trainer (no usage block)
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run(cfg)


if __name__ == "__main__":
    run_command(main)
