"""Timing for the benchmarks: wall-clock seconds per call after a warm-up call."""
import time


def seconds_per_call(fn, min_seconds=1.0, min_runs=2):
    """Median-free simple timing: run until min_seconds and min_runs, return seconds per run."""
    fn()  # warm-up (and for jax: compile)
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if runs >= min_runs and elapsed >= min_seconds:
            return elapsed / runs
