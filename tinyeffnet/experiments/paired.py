"""Paired comparison of two variants trained on the same seeds.

Every variant of an ablation is trained with the same seeds, so seed s of variant A and
seed s of base share their data order, augmentation and dropout keys (their initial
weights differ only where the networks differ). What varies from seed to seed is then
largely common to both, and the difference A - base measured seed by seed has a much
smaller spread than either variant's top-1. The right test is on those per-seed
differences: their mean with a Student's t confidence interval over seeds.

    d_s = top1_A(s) - top1_B(s)            for every seed s both finished
    mean d ± t(1 - alpha/2, n - 1) * sd(d) / sqrt(n)

The interval decides the verdict on a claim "A > B": reproduced when it lies above 0,
contradicted when it lies below 0, not resolved when it holds 0.

The t quantile is computed here (regularised incomplete beta function, bisection): no SciPy.
"""
import math
import statistics

CONFIDENCE = 0.95


def paired_difference(a, b, confidence=CONFIDENCE):
    """The per-seed differences a[s] - b[s] over the seeds both have ({seed: value} dicts):
    dict(seeds, differences, n, mean, std, half_width, low, high, confidence). With fewer than
    two common seeds the interval fields are None."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    out = dict(seeds=seeds, differences=diffs, n=len(diffs), mean=statistics.fmean(diffs) if diffs else None,
               std=None, half_width=None, low=None, high=None, confidence=confidence)
    if len(diffs) >= 2:
        std = statistics.stdev(diffs)
        half = t_quantile(0.5 + confidence / 2, len(diffs) - 1) * std / math.sqrt(len(diffs))
        out.update(std=std, half_width=half, low=out["mean"] - half, high=out["mean"] + half)
    return out


def verdict(difference):
    """The verdict on the claim "first > second" from a paired_difference of (first, second)."""
    if difference["low"] is None:
        return "not resolved"
    if difference["low"] > 0:
        return "reproduced"
    if difference["high"] < 0:
        return "contradicted"
    return "not resolved"


def t_quantile(p, df):
    """The p-quantile of Student's t distribution with `df` degrees of freedom (0 < p < 1)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):  # bisection to float precision
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_cdf(t, df):
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def _incomplete_beta(a, b, x):
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only on this side: use symmetry
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a
