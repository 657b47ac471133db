"""Checks of lesson 15's exercise: the paired interval over seeds."""
import random

from .common import Wrong, close, exercise, given


@exercise("15.1", "paired_interval", """Write paired_interval(a, b) -> (mean, low, high): a and b map seed ->
          top-1 of two variants trained on the same seeds. Take the per-seed differences a[s] - b[s] over
          the seeds both have, their mean, and the 95% Student's t interval mean +- t * sd / sqrt(n) (sample
          standard deviation, t = t_quantile(0.975, n - 1) from tinyeffnet.experiments.paired).""")
def check_paired_interval(paired_interval):
    from tinyeffnet.experiments.paired import paired_difference
    rng = random.Random(1501)
    cases = [({0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.78, 1: 0.80, 2: 0.80}),
             ({0: 0.5, 1: 0.6}, {0: 0.52, 1: 0.58})]
    for _ in range(3):
        seeds = rng.sample(range(10), rng.randint(2, 6))
        common = rng.uniform(0.6, 0.9)
        base = {s: common + rng.gauss(0, 0.02) for s in seeds}
        cases.append(({s: v + rng.gauss(0.01, 0.005) for s, v in base.items()}, {**base, 99: 0.5}))  # 99: base only
    for a, b in cases:
        want = paired_difference(a, b)
        got = tuple(given(paired_interval(dict(a), dict(b))))
        if len(got) != 3 or not all(close(g, w, 1e-9, 1e-12) for g, w in zip(got, (want["mean"], want["low"], want["high"]))):
            raise Wrong(f"a {a}, b {b}: the paired interval is ({want['mean']:.5f}, {want['low']:.5f}, "
                        f"{want['high']:.5f}), yours {tuple(round(g, 5) for g in got)}")
    return f"equal to the report's paired statistics on {len(cases)} cases"
