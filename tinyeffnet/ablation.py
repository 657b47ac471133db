"""`python -m tinyeffnet.ablation --variants all --workdir DIR [--seeds N] [training flags]`:
the paper's Table II, the SE variants of EfficientNet-B0 trained side by side.

Every chosen variant is trained with the identical recipe (every flag of
`python -m tinyeffnet.train`), the same data order and the same seeds, each into
DIR/<variant>/seed-<s>/; then DIR/table2.md, table2.json and table2.png compare our
figures with the paper's. Rerun the same command to resume; start it on several machines
(or several times) on one shared DIR and they split the runs. See
tinyeffnet.experiments.runner for how runs are planned, shared and isolated.
"""
import sys

from ._cli import run_command
from .experiments.runner import AblationError, AblationStopped, ablate, parse_variants, write_table_once
from .experiments.table2 import BASE, markdown_table
from .model import VARIANTS
from .training.config import build_parser, config_from_args

PROG = "python -m tinyeffnet.ablation"


def build_ablation_parser():
    p = build_parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="all", help="all, or a comma-separated list of " + ", ".join(VARIANTS)
                   + " (base is always added: the table compares with it)")
    p.add_argument("--seeds", type=int, default=1,
                   help="runs per variant, seeds --seed .. --seed + N - 1 (the same for every variant)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write table2.* from the runs finished so far, naming the others")
    p.set_defaults(variant=None)
    helps = dict(workdir="the ablation folder (required): DIR/<variant>/seed-<s>/ per run, DIR/table2.*",
                 seed="first seed: run s of every variant uses seed + s",
                 variant="not used here: give --variants", resume="not needed: the ablation always resumes")
    for action in p._actions:
        if action.dest in helps:
            action.help = helps[action.dest]
    return p

def main(argv=None):
    parser = build_ablation_parser()
    args = parser.parse_args(argv)

    def fail(message, status=2):
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return status

    if args.variant is not None:
        return fail("--variant picks one run of tinyeffnet.train; here give --variants (all or a comma-separated "
                    "list of " + ", ".join(VARIANTS) + ")")
    if not args.workdir:
        return fail("--workdir DIR is required: the ablation folder")
    if args.seeds < 1:
        return fail(f"--seeds must be at least 1, got {args.seeds}")
    try:
        variants = parse_variants(args.variants)
        args.variant = BASE
        cfg = config_from_args(args).resolved().check()
    except ValueError as e:
        return fail(str(e))
    if BASE not in variants:
        print("adding base to --variants: the table reports every variant's difference to it")
        variants.insert(0, BASE)
    seeds = [cfg.seed + k for k in range(args.seeds)]
    workdir = args.workdir
    print(f"SE ablation: {len(variants)} variants x {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(variants)}; seeds "
          f"{', '.join(map(str, seeds))}) in {workdir}", flush=True)
    try:
        table, failed = ablate(cfg, variants, seeds, workdir, train=not args.report_only)
    except AblationError as e:
        return fail(str(e))
    except AblationStopped as e:
        print("stopped by a signal: the run in progress wrote a checkpoint; finished runs are kept; rerun the "
              "same command to resume", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs and checkpoints are kept; rerun the same command to resume",
              file=sys.stderr)
        return 130
    try:
        paths, wrote = write_table_once(table, workdir)
    except OSError as e:  # WriteError: one line naming the file
        return fail(str(e), status=1)
    print()
    print(markdown_table(table))
    if wrote:
        print(f"\nwrote {paths['md']}, {paths['json']}, {paths['png']}")
    else:
        print(f"\n{paths['json']} already holds this table (written before, or by another worker): left as it is")
    if failed:
        print(f"{len(failed)} run(s) failed: " + ", ".join(f"{f['variant']} seed {f['seed']}" for f in failed)
              + "; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_command(main)
