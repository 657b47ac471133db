"""`python -m tinyeffnet.ablation --variants all --workdir DIR [--seeds N] [training flags]`:
the paper's Table II, the SE variants of EfficientNet-B0 trained side by side.

Every chosen variant is trained with the identical recipe (every flag of
`python -m tinyeffnet.train`), the same data order and the same seeds, each into
DIR/<variant>/seed-<s>/; then DIR/table2.md, table2.json and table2.png compare our
figures with the paper's. Rerun the same command to resume. See
tinyeffnet.experiments.ablation for how runs are planned and isolated.
"""
import sys

from ._cli import run_command
from .experiments.ablation import AblationError, ablate, parse_variants
from .experiments.table2 import BASE, markdown_table, write_report
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
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs and checkpoints are kept; rerun the same command to resume",
              file=sys.stderr)
        return 130
    paths = write_report(table, workdir)
    print()
    print(markdown_table(table))
    print(f"\nwrote {paths['md']}, {paths['json']}, {paths['png']}")
    if failed:
        print(f"{len(failed)} run(s) failed: " + ", ".join(f"{f['variant']} seed {f['seed']}" for f in failed)
              + "; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_command(main)
