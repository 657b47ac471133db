"""Data pipeline throughput: python -m data_tools.bench --data SPEC --workers N.

The default spec, `synthetic`, writes a temporary ImageNet-style folder of 500x375 JPEGs
(data_tools.synthetic) and measures train-time augmentation on it. Wall-clock rates
depend on what else the machine runs, so the main process's CPU time per image is
reported too: with workers=0 it is the pipeline's own cost, immune to other load.
"""
import argparse
import json
import sys
import tempfile
import time

from .errors import DataError
from .loader import Loader
from .datasets import open_dataset
from .synthetic import make_image_folder

SYNTHETIC = "synthetic"


def _measure(spec, workers, batch_size, image_size, steps, autoaugment):
    dataset = open_dataset(spec, "train", image_size, autoaugment=autoaugment)
    with Loader(dataset, batch_size, workers=workers) as loader:
        # Untimed warm-up: worker start-up, cold caches, and filling the prefetch pipeline,
        # so that the timed batches were all produced at the steady-state rate.
        batches = _endless(loader)
        for _ in range(1 + workers * loader.prefetch):
            next(batches)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            next(batches)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        batches.close()
    images = steps * batch_size
    result = {
        "spec": spec, "workers": workers, "batch_size": batch_size, "image_size": image_size,
        "steps": steps, "autoaugment": autoaugment,
        "images_per_s": images / wall,
        "images_per_s_per_worker": images / wall / max(1, workers),
    }
    # With workers=0 this is the whole pipeline's cost per image; with workers, what the
    # main process spends receiving each image (the workers' own CPU time is not visible).
    result["main_process_cpu_ms_per_image"] = 1000 * cpu / images
    return result


def _endless(loader):
    epoch = 0
    while True:
        yield from loader.batches(epoch)
        epoch += 1


def run_data_bench(spec, workers, batch_size, image_size, steps, autoaugment=False):
    """Train-loader throughput on `spec` ('synthetic' = a temporary folder of 500x375 JPEGs)."""
    if steps < 1:
        raise DataError(f"steps must be >= 1, got {steps}")
    if spec != SYNTHETIC:
        return _measure(spec, workers, batch_size, image_size, steps, autoaugment)
    with tempfile.TemporaryDirectory(prefix="data_bench_") as root:
        # 8 classes x 16 photos: enough distinct files to defeat per-file luck, quick to write.
        per_class = max(16, -(-batch_size // 8))
        make_image_folder(root, classes=8, train_per_class=per_class, val_per_class=0, odd_files=False)
        result = _measure(root, workers, batch_size, image_size, steps, autoaugment)
    result["spec"] = SYNTHETIC
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="Measure data loader throughput (train augmentation).")
    parser.add_argument("--data", default=SYNTHETIC, help="dataset spec, or 'synthetic' (500x375 JPEGs)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--autoaugment", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = run_data_bench(args.data, args.workers, args.batch_size, args.image_size, args.steps,
                                args.autoaugment)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
