"""`python -m tinyeffnet.summary --variant V`: the network as the paper's Table I, with
parameters and multiply-accumulates (MACs) per stage (see tinyeffnet.model.stages).
"""

from ._cli import ArgumentParser, run_command
from ._files import dumps
from .model.stages import format_table, summarize


def main(argv=None):
    p = ArgumentParser(prog="python -m tinyeffnet.summary", description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="base", help="base, seend@noskip|hasskip|all, nose@noskip|hasskip|all")
    p.add_argument("--model", default="b0", help="b0 .. b7 (compound scaling)")
    p.add_argument("--image-size", type=int, default=None, help="input resolution (default: the model's own)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes of the FC layer (default 1000)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    if args.image_size is not None and args.image_size < 1:
        p.error("--image-size must be a positive number of pixels")
    try:
        summary = summarize(args.variant, args.model, args.image_size, args.num_classes)
    except ValueError as e:
        p.error(str(e))
    print(dumps(summary) if args.json else format_table(summary))
    return 0


if __name__ == "__main__":
    run_command(main)
