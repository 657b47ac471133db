"""`python -m tinyeffnet.bench`: how fast is it, measured, never asserted in a test.

Modes (pick by flags):
  --backend python                       conv2d forward + both backward convolutions on a
                                         B0-like depthwise 5x5 and a 1x1 conv, in MACs/s,
                                         beside a textbook nested-loop conv in the same process
  --backend B --variant V [...]          one full training step (forward + our backward) of
                                         a model; for jax also the same loss under jax.grad,
                                         and XLA's temp memory and bytes accessed of both
  --backend jax --topology v5e:2x2 --steps 0
                                         both steps (and the eval step) compiled for that TPU
                                         slice on this machine, data parallel over its chips
                                         (needs libtpu: pip install -e '.[jax,tpu]'); XLA's
                                         analyses per chip, nothing run
  --data SPEC --workers N                the input pipeline, images/s (see data_tools.bench)
"""
import argparse

from backends import backend_class

from ._cli import ArgumentParser, run_command
from ._files import dumps
from .benchmarks.conv import bench_conv
from .benchmarks.python_step import bench_model_python
from .training.runtime import checked_compute_dtype


def build_parser():
    p = ArgumentParser(prog="python -m tinyeffnet.bench", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--backend", default=None, help="python or jax")
    p.add_argument("--variant", default=None, help="time a full training step of this variant")
    p.add_argument("--model", default="b0", help="b0 .. b7 (default b0)")
    p.add_argument("--image-size", type=int, default=32, help="input resolution (default 32)")
    p.add_argument("--batch-size", type=int, default=1, help="images per step (default 1)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes (default 1000)")
    p.add_argument("--dtype", default="float32", help="jax compute dtype: one of the backend's compute dtypes "
                   "(default float32)")
    p.add_argument("--steps", type=int, default=10,
                   help="timed steps per round for jax, median of 3 rounds (default 10; 0: compile and analyse only)")
    p.add_argument("--depthwise", choices=["taps", "conv"], default=None,
                   help="jax: depthwise convs as kernel taps or as XLA conv ops (default: taps on CPU only)")
    p.add_argument("--dense", choices=["matmul", "conv"], default=None,
                   help="jax: dense convs as matrix products or as XLA conv ops (default: matmul on CPU only)")
    p.add_argument("--topology", default=None,
                   help="jax: compile for this TPU slice instead (e.g. v5e:2x2, v4:2x2x1; needs --steps 0)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="time each case at least this long")
    p.add_argument("--data", default=None, help="benchmark the input pipeline on this dataset name")
    p.add_argument("--workers", type=int, default=2, help="data loader worker processes (with --data)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def check(p, args):
    """Refuse a request no benchmark can carry out (one line, exit 2); returns the backend's class."""
    if args.backend is None:
        p.error("choose what to measure: --backend python|jax [--variant V], or --data SPEC")
    if args.image_size < 1 or args.batch_size < 1 or args.steps < 0:
        p.error("--image-size and --batch-size must be positive, --steps not negative")
    try:
        cls = backend_class(args.backend)
        if args.variant is not None and not cls.runs_in_python:
            checked_compute_dtype(args.backend, args.dtype)  # a pure-Python step computes in its own float
    except (ValueError, ImportError) as e:
        p.error(str(e))
    if not cls.compiles and (args.depthwise or args.dense or args.topology):
        p.error("--depthwise, --dense and --topology are for XLA programs: they need --backend jax")
    if args.topology and (args.variant is None or args.steps):
        p.error("--topology compiles a step for hardware that is not here: give --variant V and --steps 0")
    return cls


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if args.data is not None:
        from data_tools.bench import main as data_main
        forwarded = ["--data", args.data, "--workers", str(args.workers)]
        return data_main(forwarded + (["--json"] if args.json else []))
    cls = check(p, args)
    if args.variant is None:
        print_conv(bench_conv(args.backend, args.min_seconds), args)
        return 0
    if cls.compiles:  # the XLA step, beside jax.grad of the same forward, and XLA's analyses
        from .benchmarks.jax_step import bench_model_jax
        from .benchmarks.tpu import TopologyError
        try:
            result = bench_model_jax(args)
        except TopologyError as e:
            p.error(str(e))
    else:
        try:
            result = bench_model_python(args.variant, args.model, args.image_size, args.batch_size,
                                        args.num_classes, args.min_seconds)
        except ValueError as e:
            p.error(str(e))
    if args.json:
        print(dumps(result))
    else:
        print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
                        if v is not None))
    return 0


def print_conv(results, args):
    if args.json:
        print(dumps(dict(backend=args.backend, conv=results)))
        return
    print(f"conv2d forward + grad_input + grad_weight on the {args.backend} backend")
    for r in results:
        line = f"  {r['case']:<30} {r['macs_per_s'] / 1e6:9.2f} M MAC/s"
        if "ratio" in r:
            line += (f"   textbook loop nest {r['naive_macs_per_s'] / 1e6:6.2f} M MAC/s"
                     f"   ratio {r['ratio']:.1f}x")
        print(line)


if __name__ == "__main__":
    run_command(main)
