"""`python -m tinyeffnet.train --backend jax --variant base`: train, evaluate, checkpoint.

Every value is a flag (`--help` lists them with each preset's value); the run itself is
tinyeffnet.training.loop.train. Exit status: 0 done; 2 the request was refused (bad flags,
or the work directory holds another run or is claimed by a live one), nothing written; 1
the run failed (it diverged, a write failed, the data broke), what it wrote before stays
loadable; 143 (SIGTERM) or 130 (SIGINT, Ctrl-C) stopped on the signal after a step, its
checkpoint written (--resume continues); 130 also for a Ctrl-C before the first step, when
there is nothing to save.
"""
import dataclasses
import logging
import signal
import sys

from tqdm.contrib.logging import logging_redirect_tqdm

from data_tools import DataError

from ._cli import run_command
from ._files import WriteError
from .training.checkpoint import CheckpointError
from .training.config import ConfigError, build_parser, config_from_args
from .training.loop import TrainingError, train
from .training.preemption import STOP_SIGNALS, Stopped
from .training.rundir import default_workdir


def main(argv=None):
    parser = build_parser(description=__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args).resolved().check()
    except ValueError as e:  # one line, like every other error of the trainer (no usage block)
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run(cfg)


def run(cfg):
    """train(cfg) as the command runs it: the exit status (the module's docstring) and, on
    failure, one line."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cfg = dataclasses.replace(cfg, workdir=cfg.workdir or default_workdir(cfg))  # named in the messages below
    again = f"python -m tinyeffnet.train --resume --workdir {cfg.workdir} (and the run's other flags)"
    try:
        with logging_redirect_tqdm():  # warnings go above the progress bar, not into it
            train(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except WriteError as e:
        print(f"error: {e} (whatever was written before it is kept and loads; fix the cause, then: {again})",
              file=sys.stderr)
        return 1
    except (ValueError, DataError, CheckpointError, TrainingError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Stopped as e:
        for s in STOP_SIGNALS:  # the process ends now: a second signal must not cut the line below
            signal.signal(s, signal.SIG_IGN)
        print(str(e), file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print(f"interrupted before the first step was done, so there was nothing to save; continue with: {again}",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    run_command(main)
