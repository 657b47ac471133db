"""`python -m tinyeffnet.bench`: how fast is it, measured, never asserted in a test.

Modes (pick by flags):
  --backend python                       conv2d forward + both backward convolutions on a
                                         B0-like depthwise 5x5 and a 1x1 conv, in MACs/s,
                                         beside a textbook nested-loop conv in the same process
  --backend B --variant V [...]          one full training step (forward + our backward) of
                                         a model; for jax also the same loss under jax.grad
  --data SPEC --workers N                the input pipeline, images/s (see data_tools.bench)
"""
import argparse
import json
import sys
import time

from backends import get_backend


def _time(fn, min_seconds=1.0, min_runs=2):
    """Median-free simple timing: run until min_seconds and min_runs, return seconds per run."""
    fn()  # warm-up (and for jax: compile)
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if runs >= min_runs and elapsed >= min_seconds:
            return elapsed / runs


def naive_conv2d(x, xs, w, ws, stride, pad, groups):
    """The textbook loop nest, one multiply-add per Python step: the reference speed."""
    n, h, wd, c = xs
    kh, kw, cg, co = ws
    (pt, pb), (pl, pr) = pad
    oh, ow = (h + pt + pb - kh) // stride + 1, (wd + pl + pr - kw) // stride + 1
    cog = co // groups
    out = [0.0] * (n * oh * ow * co)
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for o in range(co):
                    g, acc = o // cog, 0.0
                    for ky in range(kh):
                        iy = oy * stride + ky - pt
                        if 0 <= iy < h:
                            for kx in range(kw):
                                ix = ox * stride + kx - pl
                                if 0 <= ix < wd:
                                    for ci in range(cg):
                                        acc += (x[((b * h + iy) * wd + ix) * c + g * cg + ci]
                                                * w[((ky * kw + kx) * cg + ci) * co + o])
                    out[((b * oh + oy) * ow + ox) * co + o] = acc
    return out


# name, input NHWC, kernel, stride, groups, out channels: shapes from B0's stages 4 and 6
CONV_CASES = [
    ("depthwise 5x5 s1, 14x14x240", (1, 14, 14, 240), 5, 1, 240, 240),
    ("depthwise 5x5 s2, 28x28x144", (1, 28, 28, 144), 5, 2, 144, 144),
    ("1x1 conv 14x14, 40->240", (1, 14, 14, 40), 1, 1, 1, 240),
]


def bench_conv(backend_name, min_seconds=1.0):
    from tinyeffnet.functional import same_padding
    b = get_backend(backend_name)
    results = []
    for name, xs, k, stride, groups, co in CONV_CASES:
        ws = (k, k, xs[3] // groups, co)
        pad = (same_padding(xs[1], k, stride), same_padding(xs[2], k, stride))
        key_x, key_w, key_g = b.split_key(b.key(0), 3)
        x = b.uniform(key_x, xs, -1.0, 1.0)
        w = b.uniform(key_w, ws, -1.0, 1.0)
        y = b.conv2d(x, w, stride, pad, groups)
        dy = b.uniform(key_g, b.shape(y), -1.0, 1.0)
        n, oh, ow, _ = b.shape(y)
        macs = n * oh * ow * co * k * k * ws[2]

        def step():
            out = b.conv2d(x, w, stride, pad, groups)
            gx = b.conv2d_grad_input(dy, w, xs, stride, pad, groups)
            gw = b.conv2d_grad_weight(x, dy, ws, stride, pad, groups)
            return b.to_flat(out)[0] + b.to_flat(gx)[0] + b.to_flat(gw)[0]  # forces jax to finish

        seconds = _time(step, min_seconds)
        entry = dict(case=name, macs_per_step=3 * macs, seconds=seconds, macs_per_s=3 * macs / seconds)
        if backend_name == "python":  # the same forward conv, written as a textbook loop nest
            xd, wd_ = b.to_flat(x), b.to_flat(w)
            t0 = time.perf_counter()
            naive_conv2d(xd, xs, wd_, ws, stride, pad, groups)
            naive_macs_per_s = macs / (time.perf_counter() - t0)
            entry.update(naive_macs_per_s=naive_macs_per_s, ratio=entry["macs_per_s"] / naive_macs_per_s)
        results.append(entry)
    return results


def bench_model_python(variant, model, image_size, batch_size, num_classes, min_seconds):
    from tinyeffnet import Tensor, functional as F
    from tinyeffnet.efficientnet import build_model
    b = get_backend("python")
    net = build_model(variant, model, num_classes, backend=b).train()
    x = Tensor.uniform(1, (batch_size, image_size, image_size, 3), -1.0, 1.0, backend=b)
    labels = [i % num_classes for i in range(batch_size)]

    def step():
        net.zero_grad()
        F.cross_entropy(net(x, key=b.key(2)), labels, 0.1).backward()

    seconds = _time(step, min_seconds, min_runs=1)
    return dict(backend="python", variant=net.variant, model=net.model_name, image_size=image_size,
                batch_size=batch_size, seconds_per_step=seconds, img_per_s=batch_size / seconds)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyeffnet.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--backend", default=None, help="python or jax")
    p.add_argument("--variant", default=None, help="time a full training step of this variant")
    p.add_argument("--model", default="b0", help="b0 .. b7 (default b0)")
    p.add_argument("--image-size", type=int, default=32, help="input resolution (default 32)")
    p.add_argument("--batch-size", type=int, default=1, help="images per step (default 1)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes (default 1000)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="jax compute dtype")
    p.add_argument("--steps", type=int, default=10, help="timed steps for jax (default 10)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="time each case at least this long")
    p.add_argument("--data", default=None, help="benchmark the input pipeline on this dataset spec")
    p.add_argument("--workers", type=int, default=2, help="data loader worker processes (with --data)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    if args.data is not None:
        from data_tools.bench import main as data_main
        forwarded = ["--data", args.data, "--workers", str(args.workers)]
        return data_main(forwarded + (["--json"] if args.json else []))
    if args.backend is None:
        p.error("choose what to measure: --backend python|jax [--variant V], or --data SPEC")
    if args.image_size < 1 or args.batch_size < 1:
        p.error("--image-size and --batch-size must be positive")
    try:
        get_backend(args.backend)
    except (ValueError, ImportError) as e:
        p.error(str(e))

    if args.variant is None:
        results = bench_conv(args.backend, args.min_seconds)
        if args.json:
            print(json.dumps(dict(backend=args.backend, conv=results)))
        else:
            print(f"conv2d forward + grad_input + grad_weight on the {args.backend} backend")
            for r in results:
                line = f"  {r['case']:<30} {r['macs_per_s'] / 1e6:9.2f} M MAC/s"
                if "ratio" in r:
                    line += (f"   textbook loop nest {r['naive_macs_per_s'] / 1e6:6.2f} M MAC/s"
                             f"   ratio {r['ratio']:.1f}x")
                print(line)
        return 0

    if args.backend == "jax":
        from tinyeffnet.jax_bench import bench_model_jax
        result = bench_model_jax(args)
    else:
        try:
            result = bench_model_python(args.variant, args.model, args.image_size, args.batch_size,
                                        args.num_classes, args.min_seconds)
        except ValueError as e:
            p.error(str(e))
    if args.json:
        print(json.dumps(result))
    else:
        print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
